"""Imported trials: role ``imported`` for published results read into a sweep.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02 02:45:00

``bench import deepobs`` stores DeepOBS-format result files (Crowded Valley's, say) as trials
of role ``imported``, beside the user's own runs. The only schema change is the role check
constraint. Frozen like 0001: plain literals, no model imports.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ck_bench_trials_role"


def _set_roles(roles: tuple[str, ...]) -> None:
    condition = f"role IN ({', '.join(repr(r) for r in roles)})"
    with op.batch_alter_table("bench_trials") as batch:
        batch.drop_constraint(op.f(_NAME), type_="check")
        batch.create_check_constraint(op.f(_NAME), condition)


def upgrade() -> None:
    _set_roles(("grid", "tuning", "final", "imported"))


def downgrade() -> None:
    op.execute("DELETE FROM bench_metrics WHERE trial_id IN "
               "(SELECT id FROM bench_trials WHERE role = 'imported')")
    op.execute("DELETE FROM bench_trials WHERE role = 'imported'")
    _set_roles(("grid", "tuning", "final"))
