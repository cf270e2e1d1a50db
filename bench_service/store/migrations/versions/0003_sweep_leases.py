"""Sweep leases: one driver per sweep at a time (bench_sweep_leases).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:50:00

Frozen like 0001: plain column types, no model imports.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bench_sweep_leases",
        sa.Column("sweep_name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", _TZ, nullable=False),
        sa.Column("renewed_at", _TZ, nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("sweep_name", name=op.f("pk_bench_sweep_leases")),
    )


def downgrade() -> None:
    op.drop_table("bench_sweep_leases")
