"""The sweep driver: create or resume a sweep in the store and run what is left on Ray."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from bench_service.cluster.lease import sweep_lease
from bench_service.cluster.session import check_address, check_resources, ray_session
from bench_service.cluster.sweep_runner import TrialJob, run_planned_trials

if TYPE_CHECKING:
    from bench_service.store import Store, SweepInfo
    from bench_service.sweep import SweepPlan


def db_flag(url: str) -> str:
    """`` --db URL`` for follow-up commands, or nothing when ``url`` is the default."""
    from bench_service.store import mask_url, resolve_url

    return "" if url == resolve_url(None) else f" --db {mask_url(url)}"


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


def execute_sweep(
    plan: SweepPlan,
    store: Store,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    out: TextIO | None = None,
    wait_if_busy: bool = False,
) -> int:
    """Run (or resume) a planned sweep as its one driver; returns the process exit code.

    The sweep's lease is held throughout: another driver of the same sweep is refused
    (``SweepLeaseHeld``, naming it) or, with ``wait_if_busy``, waited for.
    """
    check_address(address)  # before the sweep (or its lease) is written
    with sweep_lease(store, plan.name, wait=wait_if_busy, out=out):
        return _execute_sweep(plan, store, address=address, num_cpus=num_cpus,
                              progress=progress, out=out)


def _execute_sweep(
    plan: SweepPlan,
    store: Store,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    out: TextIO | None = None,
) -> int:
    """Run (or resume) a planned grid sweep; returns the process exit code."""
    from bench_service.store import mask_url

    def say(msg: str) -> None:
        if out is not None:
            print(msg, file=out, flush=True)

    if plan.spec.tuning is not None:
        from bench_service.cluster.tuning import execute_tuned_sweep

        return execute_tuned_sweep(plan, store, address=address, num_cpus=num_cpus,
                                   progress=progress, out=out)
    sweep, resumed = register_sweep(plan, store)
    todo = store.trials_to_run(sweep.id)
    total = len(plan.trials)
    done = total - len(todo)
    if resumed:
        say(f"resuming sweep {sweep.name!r}: {done}/{total} trials already finished")
    else:
        say(f"sweep {sweep.name!r}: {total} trials "
            f"({len(plan.cells)} cells × {len(plan.spec.seeds)} seeds) in {mask_url(store.url)}")
    if plan.skipped:
        say(f"skipped {len(plan.skipped)} incompatible cell(s) (skip_incompatible: true)")
    if not todo:
        store.set_sweep_status(sweep.id, "completed")
        say("nothing to run: every trial has finished")
        return 0
    res = plan.spec.resources
    with ray_session(address, num_cpus=num_cpus) as session:
        say(f"ray: {'embedded local' if session.started_here else session.address}, "
            f"{session.cpus:g} CPU, {session.gpus:g} GPU")
        if waiting := check_resources(session, res.cpus_per_trial, res.gpus_per_trial):
            say(waiting)
        store.set_sweep_status(sweep.id, "running")
        outcome = run_planned_trials(
            [TrialJob(t.id, t.config) for t in todo], store,
            cpus_per_trial=res.cpus_per_trial, gpus_per_trial=res.gpus_per_trial,
            max_retries=res.max_retries, already_done=done, progress=progress,
        )
    if outcome.cancelled:
        n = store.mark_unfinished(sweep.id, "cancelled")
        store.set_sweep_status(sweep.id, "cancelled")
        say(f"cancelled: {n} unfinished trial(s) marked cancelled; run the same command "
            "again to resume")
        return 130
    counts = store.status_counts(sweep.id)
    store.set_sweep_status(sweep.id, "completed")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    say(f"finished in {outcome.wall_time:.1f} s: {summary}")
    say(f"results: bench results --sweep {sweep.name}{db_flag(store.url)}")
    return 1 if counts.get("failed") else 0
