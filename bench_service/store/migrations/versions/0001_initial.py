"""Initial bench_ schema: sweeps, trials and metrics.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Frozen on purpose: it spells out plain column types rather than importing the models, so later
changes to ``models.py`` need a new revision instead of silently changing this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bench_sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("n_trials", sa.Integer(), server_default="0", nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("started_at", _TZ, nullable=True),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'cancelled', 'failed')",
            name=op.f("ck_bench_sweeps_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bench_sweeps")),
        sa.UniqueConstraint("name", name=op.f("uq_bench_sweeps_name")),
    )
    op.create_table(
        "bench_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("trial_hash", sa.String(length=64), nullable=False),
        sa.Column("cell_key", sa.String(length=64), nullable=False),
        sa.Column("workload", sa.String(length=100), nullable=False),
        sa.Column("optimizer", sa.String(length=100), nullable=False),
        sa.Column("scheduler", sa.String(length=100), nullable=False),
        sa.Column("regularizer", sa.String(length=100), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="grid", nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("versions", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("diverged_step", sa.Integer(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("wall_time", sa.Float(), nullable=True),
        sa.Column("examples_per_sec", sa.Float(), nullable=True),
        sa.Column("time_to_target", sa.Float(), nullable=True),
        sa.Column("step_to_target", sa.Integer(), nullable=True),
        sa.Column("final", sa.JSON(), nullable=True),
        sa.Column("best", sa.JSON(), nullable=True),
        sa.Column("final_val_loss", sa.Float(), nullable=True),
        sa.Column("final_val_accuracy", sa.Float(), nullable=True),
        sa.Column("final_train_loss", sa.Float(), nullable=True),
        sa.Column("best_val_loss", sa.Float(), nullable=True),
        sa.Column("best_val_accuracy", sa.Float(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("started_at", _TZ, nullable=True),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.Column("heartbeat_at", _TZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'diverged', 'failed', 'pruned', "
            "'cancelled')",
            name=op.f("ck_bench_trials_status"),
        ),
        sa.CheckConstraint(
            "role IN ('grid', 'tuning', 'final')", name=op.f("ck_bench_trials_role")
        ),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["bench_sweeps.id"],
            name=op.f("fk_bench_trials_sweep_id_bench_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bench_trials")),
        sa.UniqueConstraint(
            "sweep_id", "trial_hash", name=op.f("uq_bench_trials_sweep_id_trial_hash")
        ),
    )
    op.create_index(op.f("ix_bench_trials_sweep_id"), "bench_trials", ["sweep_id"])
    op.create_index("ix_bench_trials_sweep_cell", "bench_trials", ["sweep_id", "cell_key"])
    op.create_index(
        "ix_bench_trials_sweep_axes",
        "bench_trials",
        ["sweep_id", "workload", "optimizer", "scheduler", "regularizer"],
    )
    op.create_index("ix_bench_trials_sweep_status", "bench_trials", ["sweep_id", "status"])
    op.create_table(
        "bench_metrics",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("wall_time", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("special", sa.String(length=4), nullable=True),
        sa.CheckConstraint("scope IN ('step', 'epoch')", name=op.f("ck_bench_metrics_scope")),
        sa.CheckConstraint(
            "special IS NULL OR special IN ('nan', 'inf', '-inf')",
            name=op.f("ck_bench_metrics_special"),
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["bench_trials.id"],
            name=op.f("fk_bench_metrics_trial_id_bench_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bench_metrics")),
    )
    op.create_index(
        "ix_bench_metrics_curve", "bench_metrics", ["trial_id", "name", "scope", "step"]
    )


def downgrade() -> None:
    op.drop_index("ix_bench_metrics_curve", table_name="bench_metrics")
    op.drop_table("bench_metrics")
    op.drop_index("ix_bench_trials_sweep_status", table_name="bench_trials")
    op.drop_index("ix_bench_trials_sweep_axes", table_name="bench_trials")
    op.drop_index("ix_bench_trials_sweep_cell", table_name="bench_trials")
    op.drop_index(op.f("ix_bench_trials_sweep_id"), table_name="bench_trials")
    op.drop_table("bench_trials")
    op.drop_table("bench_sweeps")
