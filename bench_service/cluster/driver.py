"""The sweep driver: create or resume a sweep in the store and run what is left on Ray.

Grid and tuned sweeps go through the same steps here (``SweepRun``: ``cluster.grid``,
``cluster.tuning``) and the same loop (``cluster.loop.run_loop``):

1. check the cluster's address (before anything is written);
2. register the sweep (a grid's trials up front) and say how big it is;
3. stop here, without starting Ray, if the stored rows show nothing left to run;
4. start or join Ray, hand the loop the kind's trial source, run it;
5. mark the sweep ``cancelled`` (exit 130) or ``completed`` and report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

import ray

from bench_service.cluster.grid import GridRun, register_sweep
from bench_service.cluster.lease import sweep_lease
from bench_service.cluster.loop import SweepOutcome, TaskResources, run_loop
from bench_service.cluster.runs import SweepRun, db_flag
from bench_service.cluster.session import check_address, check_resources, ray_session
from bench_service.cluster.sweep_runner import slots
from bench_service.cluster.tuning import TunedRun
from bench_service.engine.errors import ConfigError

if TYPE_CHECKING:
    from bench_service.store import Store
    from bench_service.sweep import SweepPlan

#: Exit code of a cancelled sweep (a shell's 128 + SIGINT).
EXIT_CANCELLED = 130

__all__ = ["EXIT_CANCELLED", "db_flag", "execute_sweep", "register_sweep", "sweep_run"]


def sweep_run(plan: SweepPlan, store: Store, out: TextIO | None = None) -> SweepRun:
    """The driver's view of ``plan``: a grid, or a tuned sweep."""

    def say(msg: str) -> None:
        if out is not None:
            print(msg, file=out, flush=True)

    return TunedRun(plan, store, say) if plan.tuned else GridRun(plan, store, say)


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
    """Run (or resume) a planned sweep, grid or tuned, as its one driver; returns the exit code.

    The sweep's lease is held throughout, taken before anything is registered: another driver
    of the same sweep is refused (``SweepLeaseHeld``, naming it) or, with ``wait_if_busy``,
    waited for.
    """
    check_address(address)  # before the sweep (or its lease) is written
    with sweep_lease(store, plan.name, wait=wait_if_busy, out=out):
        return _execute_sweep(plan, store, address=address, num_cpus=num_cpus,
                              progress=progress, out=out)


def _execute_sweep(
    plan: SweepPlan,
    store: Store,
    *,
    address: str | None,
    num_cpus: int | None,
    progress: bool,
    out: TextIO | None,
) -> int:
    run = sweep_run(plan, store, out)
    is_new = store.get_sweep(plan.name) is None
    sweep = run.register()
    if run.nothing_left():
        store.set_sweep_status(sweep.id, "completed")
        return 0
    res = plan.spec.resources
    resources = TaskResources(res.cpus_per_trial, res.gpus_per_trial, res.max_retries)
    with ray_session(address, num_cpus=num_cpus) as session:
        if out is not None:
            print(f"ray: {'embedded local' if session.started_here else session.address}, "
                  f"{session.cpus:g} CPU, {session.gpus:g} GPU", file=out, flush=True)
        try:  # nothing is submitted yet
            waiting = check_resources(session, res.cpus_per_trial, res.gpus_per_trial)
        except ConfigError:
            if is_new:  # refused before anything ran: leave no half-made sweep behind
                store.delete_sweep(plan.name)
            raise
        if waiting and out is not None:
            print(waiting, file=out, flush=True)
        capacity = slots(ray.cluster_resources(), res.cpus_per_trial, res.gpus_per_trial)
        store.set_sweep_status(sweep.id, "running")
        outcome = run_loop(run.source(capacity), store, resources, capacity=capacity,
                           progress=progress)
    return _finish(run, outcome, store, sweep.id, out)


def _finish(run: SweepRun, outcome: SweepOutcome, store: Store, sweep_id: int,
            out: TextIO | None) -> int:
    if outcome.cancelled is not None:
        store.set_sweep_status(sweep_id, "cancelled")
        if out is not None:
            c = outcome.cancelled
            print(f"cancelled: {c.unfinished} trial(s) not finished ({c.marked} interrupted "
                  "marked cancelled); run the same command again to resume", file=out,
                  flush=True)
        return int(getattr(outcome.cause, "exit_code", EXIT_CANCELLED))
    store.set_sweep_status(sweep_id, "completed")
    return run.report(outcome, store)
