"""Service jobs: who submitted a sweep and the Ray Job that runs it (bench_sweeps columns).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:40:00

Frozen like 0001: plain column types, no model imports. The job state is checked in code
(``vocab.JOB_STATES``), not by a constraint, so adding one later needs no table rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)
_COLUMNS = ("submitter", "job_id", "job_state", "job_message", "job_submitted_at",
            "job_started_at", "job_finished_at")


def upgrade() -> None:
    with op.batch_alter_table("bench_sweeps") as batch:
        batch.add_column(sa.Column("submitter", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("job_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("job_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("job_message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("job_submitted_at", _TZ, nullable=True))
        batch.add_column(sa.Column("job_started_at", _TZ, nullable=True))
        batch.add_column(sa.Column("job_finished_at", _TZ, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bench_sweeps") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
