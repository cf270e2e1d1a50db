"""Grid sweeps as a trial source: every planned trial registered up front, run in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from bench_service.cluster.loop import Cancelled, Job, SweepOutcome
from bench_service.cluster.runs import Say, db_flag, size_note
from bench_service.vocab import TRIAL_FINISHED

if TYPE_CHECKING:
    from bench_service.store import Store, SweepInfo, TrialInfo
    from bench_service.sweep import SweepPlan


def register_sweep(plan: SweepPlan, store: Store) -> tuple[SweepInfo, bool]:
    """Create the sweep with all its trials (one transaction), or find it to resume.

    Returns the sweep and whether it already existed. Trials are identified by their config
    hash, so registering the same plan twice stores nothing twice.
    """
    from bench_service.store import NewTrial

    existing = store.get_sweep(plan.name)
    new = [
        NewTrial(
            trial_hash=t.trial_hash, cell_key=t.cell_key, workload=t.workload,
            optimizer=t.optimizer, scheduler=t.scheduler, regularizer=t.regularizer,
            seed=t.seed, config=t.config.to_dict(), params=t.params, role="grid",
        )
        for t in plan.trials
    ]
    if existing is None:
        return store.create_sweep(plan.name, plan.spec_dict, plan.spec_hash, new), False
    store.add_trials(existing.id, new)
    return existing, True


class GridSource:
    """A fixed list of trials handed out in order, a window at a time.

    ``on_cancel`` marks the sweep's unfinished rows ``cancelled`` and counts every trial
    left to run (those cancelled by an earlier Ctrl-C included); without a ``sweep_id`` the
    rows are left to the caller.
    """

    def __init__(self, jobs: Iterable[Job], *, total: int, already: int = 0,
                 store: Store | None = None, sweep_id: int | None = None) -> None:
        self._jobs = iter(jobs)
        self._exhausted = False
        self.total, self.already = total, already
        self.store, self.sweep_id = store, sweep_id
        self.left = total - already  # not done yet, handed out or not

    def start(self) -> tuple[int, int]:
        return self.total, self.already

    def next_jobs(self, free: int) -> list[Job]:
        jobs: list[Job] = []
        while len(jobs) < free and not self._exhausted:
            job = next(self._jobs, None)
            if job is None:
                self._exhausted = True
            else:
                jobs.append(job)
        return jobs

    def on_done(self, job: Job, status: str, lost: bool) -> bool:
        self.left -= 1
        return True

    def finished(self) -> bool:
        # The loop asks for jobs before it asks this, so the end of the list was reached.
        return self._exhausted

    def on_cancel(self) -> Cancelled:
        if self.store is None or self.sweep_id is None:
            return Cancelled(0, self.left)
        marked = self.store.mark_unfinished(self.sweep_id, "cancelled")
        counts = self.store.status_counts(self.sweep_id)
        return Cancelled(marked, sum(n for s, n in counts.items() if s not in TRIAL_FINISHED))


def jobs_of(trials: Iterable[TrialInfo]) -> Iterable[Job]:
    """The loop's jobs for stored grid rows, made as the window asks for them."""
    return (Job(t.id, t.config) for t in trials)


class GridRun:
    """A plain grid sweep: every planned trial registered up front; a resume runs what did
    not finish (``store.trials_to_run``)."""

    def __init__(self, plan: SweepPlan, store: Store, say: Say) -> None:
        self.plan, self.store, self.say = plan, store, say
        self.todo: list[TrialInfo] = []

    def register(self) -> SweepInfo:
        from bench_service.store import mask_url

        plan, say = self.plan, self.say
        self.sweep, resumed = register_sweep(plan, self.store)
        self.todo = self.store.trials_to_run(self.sweep.id)
        total = len(plan.trials)
        if resumed:
            say(f"resuming sweep {plan.name!r} ({total} trials{size_note(plan)}): "
                f"{total - len(self.todo)}/{total} trials already finished")
        else:
            say(f"sweep {plan.name!r}: {total} trials{size_note(plan)} "
                f"({len(plan.cells)} cells × {len(plan.spec.seeds)} seeds) in "
                f"{mask_url(self.store.url)}")
        if plan.skipped:
            say(f"skipped {len(plan.skipped)} incompatible cell(s) (skip_incompatible: true)")
        return self.sweep

    def nothing_left(self) -> bool:
        if self.todo:
            return False
        self.say("nothing to run: every trial has finished")
        return True

    def source(self, capacity: int) -> GridSource:
        from bench_service.cluster.packing import pack_jobs, pack_size

        total = len(self.plan.trials)
        jobs = jobs_of(self.todo)
        size = pack_size(self.plan.spec.execution.pack,
                         self.todo[0].config if self.todo else None)
        if size:
            jobs = pack_jobs(jobs, size)
        return GridSource(jobs, total=total, already=total - len(self.todo),
                          store=self.store, sweep_id=self.sweep.id)

    def report(self, outcome: SweepOutcome, store: Store) -> int:
        counts = store.status_counts(self.sweep.id)
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        self.say(f"finished in {outcome.wall_time:.1f} s: {summary}")
        self.say(f"results: bench results --sweep {self.sweep.name}{db_flag(store.url)}")
        return 1 if counts.get("failed") else 0
