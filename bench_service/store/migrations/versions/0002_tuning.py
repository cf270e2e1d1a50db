"""Tuning: the per-trial objective value and the bench_cells table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:50:00

Frozen like 0001: plain column types, no model imports.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("bench_trials") as batch:
        batch.add_column(sa.Column("objective", sa.Float(), nullable=True))
    op.create_table(
        "bench_cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("cell_key", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=400), nullable=False),
        sa.Column("workload", sa.String(length=100), nullable=False),
        sa.Column("optimizer", sa.String(length=100), nullable=False),
        sa.Column("scheduler", sa.String(length=100), nullable=False),
        sa.Column("regularizer", sa.String(length=100), nullable=False),
        sa.Column("study_name", sa.String(length=500), nullable=False),
        sa.Column("objective_metric", sa.String(length=64), nullable=False),
        sa.Column("objective_mode", sa.String(length=8), nullable=False),
        sa.Column("n_tuning", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_pruned", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_diverged", sa.Integer(), server_default="0", nullable=False),
        sa.Column("best_value", sa.Float(), nullable=True),
        sa.Column("best_params", sa.JSON(), nullable=True),
        sa.Column("importance", sa.JSON(), nullable=True),
        sa.Column("tuning_cpu_seconds", sa.Float(), nullable=True),
        sa.Column("tuning_gpu_seconds", sa.Float(), nullable=True),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["bench_sweeps.id"], ondelete="CASCADE",
            name=op.f("fk_bench_cells_sweep_id_bench_sweeps"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bench_cells")),
        sa.UniqueConstraint("sweep_id", "cell_key", name=op.f("uq_bench_cells_sweep_id_cell_key")),
    )
    op.create_index(op.f("ix_bench_cells_sweep_id"), "bench_cells", ["sweep_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bench_cells_sweep_id"), table_name="bench_cells")
    op.drop_table("bench_cells")
    with op.batch_alter_table("bench_trials") as batch:
        batch.drop_column("objective")
