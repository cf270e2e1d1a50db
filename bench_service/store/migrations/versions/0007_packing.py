"""Packed trials: how each trial ran (bench_trials.execution).

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-02 02:45:00

``packed (K members)`` or ``unpacked: <reason>`` for the trials of a sweep that packs
(``execution: {pack: auto | K}``), so ``bench results`` shows why a cell ran on its own.
Frozen like 0001: plain column types, no model imports.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bench_trials") as batch:
        batch.add_column(sa.Column("execution", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bench_trials") as batch:
        batch.drop_column("execution")
