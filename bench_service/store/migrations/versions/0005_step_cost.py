"""The true cost of a step: optimizer step time, state size and peak memory per trial.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02 03:00:00

Frozen like 0001: plain column types, no model imports. ``batch_alter_table`` so that SQLite
(which cannot add several columns in one ALTER) and PostgreSQL take the same path.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("step_time_mean", sa.Float()),
    ("step_time_p90", sa.Float()),
    ("optimizer_state_bytes", sa.BigInteger()),
    ("peak_memory_bytes", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("bench_trials") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bench_trials") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
