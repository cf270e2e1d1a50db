"""Tuned sweeps on Ray: ask-and-tell across every cell's Optuna study, then final seeds.

One ``TuningCoordinator`` actor, pinned to the driver's node, owns every study of the sweep
(Optuna's RDB storage in the sweep's database) and the tuning rows of the results store.
The driver loop keeps at most ``capacity`` trials in flight (the cluster's CPUs divided by
``cpus_per_trial``, or ``tuning.max_concurrent``), asks the coordinator for the next trial
of the cell with the most budget left, runs it as a Ray task (which reports each epoch's
validation metric to the coordinator for pruning), and tells the outcome back. When a
cell's budget is spent, its best config is re-run on ``final_seeds``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from bench_service.cluster.driver import db_flag
from bench_service.cluster.session import check_resources, ray_session
from bench_service.cluster.sweep_runner import (
    Progress,
    collect,
    collect_returned,
    ensure_ready,
    start_writer,
    stop_writer,
)
from bench_service.cluster.tasks import PruningHook, execute_trial, warm_worker

if TYPE_CHECKING:
    from bench_service.store import Store
    from bench_service.sweep import SweepPlan
    from bench_service.sweep.spec import TuningSpec

TERMINAL = ("completed", "diverged", "failed", "pruned")


class TuningCoordinator:
    """Ray actor holding the sweep's Optuna studies (one per cell) and their store rows."""

    def __init__(self, db_url: str, plan: SweepPlan, sweep_id: int) -> None:
        import optuna

        from bench_service.store import Store
        from bench_service.sweep import tuning as T

        self.T = T
        self.store = Store(db_url, upgrade=False)
        self.sweep_id = sweep_id
        self.plan = plan
        assert plan.spec.tuning is not None
        self.tuning: TuningSpec = plan.spec.tuning
        self.cells = {c.cell_key: c for c in plan.cells}
        storage = optuna.storages.RDBStorage(
            db_url, engine_kwargs={"pool_pre_ping": True}
            | ({"connect_args": {"timeout": 60}} if db_url.startswith("sqlite") else {}),
        )
        direction: Literal["minimize", "maximize"] = (
            "minimize" if self.tuning.objective.mode == "min" else "maximize"
        )
        self.studies: dict[str, optuna.Study] = {}
        self.live: dict[tuple[str, int], optuna.Trial] = {}
        for key, cell in self.cells.items():
            epochs = self._epochs(cell)
            self.studies[key] = optuna.create_study(
                storage=storage, study_name=T.study_name(plan.name, cell), direction=direction,
                sampler=T.make_sampler(self.tuning, cell), pruner=T.make_pruner(self.tuning,
                                                                                 epochs),
                load_if_exists=True,
            )

    @staticmethod
    def _epochs(cell: Any) -> int:
        from bench_service.engine.runner import prepare_trial

        return prepare_trial(cell.config).epochs

    # --- recovery ------------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Settle Optuna trials left RUNNING by a driver that died; return budget used/cell.

        A trial whose row finished (its outcome was stored before the driver died, but
        not told to the study) is told its real outcome; one that did not is failed
        *uncounted* (to be replaced) and its row marked cancelled. Nothing is lost and
        nothing runs twice.
        """
        from optuna.trial import TrialState

        running = [(key, ft.number) for key, study in self.studies.items()
                   for ft in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        self._settle(running)
        return {key: self.T.budget_used(s) for key, s in self.studies.items()}

    def _settle(self, running: list[tuple[str, int]]) -> int:
        """End Optuna trials whose driver is gone, by what their rows say.

        A row that finished (the driver stored its outcome, then died or was interrupted
        before telling the study) is told its real outcome and counts; any other is failed
        uncounted, and its row (with every other unfinished one) is marked cancelled.
        Returns how many rows were marked.
        """
        self.live.clear()
        rows = self.store.trials_frame(self.plan.name, role="tuning")
        by_number = {(r.cell_key, int(r.number)): r for r in rows.itertuples()
                     if r.number is not None}
        for key, number in running:
            row = by_number.get((key, number))
            if row is not None and row.status in TERMINAL:
                self._tell(key, number, int(row.trial_id))
            else:
                self._fail_uncounted(key, number)
        return self.store.mark_unfinished(self.sweep_id, "cancelled")

    # --- ask / report / tell --------------------------------------------------------------
    def ask(self, cell_key: str) -> tuple[int, int, dict[str, Any]]:
        """Start the next trial of a cell: (bench trial id, Optuna number, config dict)."""
        from bench_service.store import NewTrial

        T, cell = self.T, self.cells[cell_key]
        study = self.studies[cell_key]
        trial = study.ask(T.distributions(cell.search_space))
        config = T.config_for(cell, trial.params, self.tuning.tune_seed)
        row = self.store.add_trials(self.sweep_id, [NewTrial(
            trial_hash=T.tuning_hash(cell_key, trial.number), cell_key=cell_key,
            workload=cell.workload, optimizer=cell.optimizer, scheduler=cell.scheduler,
            regularizer=cell.regularizer, seed=config.seed, config=config.to_dict(),
            params=_resolved(config), role="tuning", number=trial.number,
        )])[0]
        trial.set_user_attr(T.TRIAL_ID, row.id)
        self.live[(cell_key, trial.number)] = trial
        return row.id, trial.number, config.to_dict()

    def report(self, cell_key: str, number: int, step: int, value: float) -> bool:
        """Record an intermediate value; ``True`` if the trial should be pruned."""
        trial = self.live.get((cell_key, number))
        if trial is None or not math.isfinite(value):
            return False
        trial.report(value, step)
        return bool(trial.should_prune())

    def tell(self, cell_key: str, number: int, trial_id: int, lost: bool = False) -> bool:
        """Tell a finished trial's outcome; returns whether it counted against the budget."""
        self.live.pop((cell_key, number), None)
        if lost:  # the infrastructure lost it: fail it uncounted, the loop asks a new one
            self._fail_uncounted(cell_key, number)
            return False
        return self._tell(cell_key, number, trial_id)

    def _fail_uncounted(self, cell_key: str, number: int) -> None:
        from optuna.trial import TrialState

        study = self.studies[cell_key]
        ft = study.get_trials(deepcopy=False)[number]
        study._storage.set_trial_user_attr(ft._trial_id, self.T.COUNTED, False)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)

    def _tell(self, cell_key: str, number: int, trial_id: int) -> bool:
        from optuna.trial import TrialState

        row = self.store.trial(trial_id)
        study = self.studies[cell_key]
        value = self.T.objective_value(row.status, row.final, row.time_to_target, self.tuning)
        self.store.set_objective(trial_id, value)
        if row.status == "pruned":
            study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        elif row.status in ("completed", "diverged"):
            study.tell(number, value, skip_if_finished=True)
        else:  # failed in user code: a crash still spends budget (counted)
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        return True

    # --- finals ----------------------------------------------------------------------------
    def finals(self, cell_key: str, cpus_per_trial: float, gpus_per_trial: float
               ) -> list[tuple[int, dict[str, Any]]]:
        """Register the cell's final runs (best config × final seeds); return those to run.

        Also writes the cell's summary row: best params and value, tuning cost, importances.
        """
        from bench_service.store import NewTrial

        T, cell, study = self.T, self.cells[cell_key], self.studies[cell_key]
        best = T.best_params(study, self.tuning.objective.mode)
        params, best_value = best if best is not None else ({}, math.nan)
        seeds = self.plan.spec.final_seeds
        configs = [T.config_for(cell, params, s) for s in seeds]
        rows = self.store.add_trials(self.sweep_id, [NewTrial(
            trial_hash=T.final_hash(c), cell_key=cell_key, workload=cell.workload,
            optimizer=cell.optimizer, scheduler=cell.scheduler, regularizer=cell.regularizer,
            seed=c.seed, config=c.to_dict(), params=_resolved(c), role="final",
        ) for c in configs])
        tuned = self.store.trials_frame(self.plan.name, role="tuning")
        tuned = tuned[tuned["cell_key"] == cell_key]
        seconds = float(tuned["wall_time"].fillna(0.0).sum())
        self.store.upsert_cell(
            self.sweep_id, cell_key, label=cell.label, workload=cell.workload,
            optimizer=cell.optimizer, scheduler=cell.scheduler, regularizer=cell.regularizer,
            study_name=study.study_name, objective_metric=self.tuning.objective.metric,
            objective_mode=self.tuning.objective.mode,
            n_tuning=len(tuned), n_pruned=int((tuned["status"] == "pruned").sum()),
            n_diverged=int((tuned["status"] == "diverged").sum()),
            best_value=best_value, best_params=params, importance=T.importance(study),
            tuning_cpu_seconds=seconds * cpus_per_trial,
            tuning_gpu_seconds=seconds * gpus_per_trial,
        )
        for r in rows:  # finished before an interruption, perhaps without its objective
            if r.status in TERMINAL:
                self.record_final(r.id)
        return [(r.id, r.config) for r in rows if r.status not in TERMINAL]

    def record_final(self, trial_id: int) -> None:
        row = self.store.trial(trial_id)
        self.store.set_objective(trial_id, self.T.objective_value(
            row.status, row.final, row.time_to_target, self.tuning))

    def abandon_running(self) -> int:
        """On cancel: settle every trial asked and not told (a resume replaces the unfinished);
        returns how many trials were marked cancelled (finals waiting to run included).

        The driver may have stored a trial's outcome and been interrupted before telling
        it; failing that one uncounted would let a resume run a fifth trial in a cell of
        four (its completed row would still count).
        """
        return self._settle(list(self.live))

    def ping(self) -> bool:
        return True


def _resolved(config: Any) -> dict[str, Any]:
    from bench_service.engine.runner import prepare_trial

    return prepare_trial(config).resolved()


@dataclass
class _Flight:
    kind: str  # "tuning" | "final"
    cell_key: str
    number: int
    trial_id: int


def execute_tuned_sweep(
    plan: SweepPlan, store: Store, *, address: str | None = None, num_cpus: int | None = None,
    progress: bool = True, out: TextIO | None = None,
) -> int:
    """Run (or resume) a tuned sweep; returns the process exit code."""
    from bench_service.store import mask_url

    def say(msg: str) -> None:
        if out is not None:
            print(msg, file=out, flush=True)

    tuning = plan.spec.tuning
    assert tuning is not None
    budget, seeds = tuning.trials_per_cell, plan.spec.final_seeds
    sweep = store.get_sweep(plan.name)
    resumed = sweep is not None
    if sweep is None:
        sweep = store.create_sweep(plan.name, plan.spec_dict, plan.spec_hash, [])
    total = len(plan.cells) * (budget + len(seeds))
    say(f"{'resuming ' if resumed else ''}tuned sweep {sweep.name!r}: {len(plan.cells)} cells × "
        f"({budget} tuning trials + {len(seeds)} final seeds) = {total} trials, "
        f"{tuning.sampler} sampler, {tuning.pruner} pruner, in {mask_url(store.url)}")
    res = plan.spec.resources
    with ray_session(address, num_cpus=num_cpus) as session:
        if waiting := check_resources(session, res.cpus_per_trial, res.gpus_per_trial):
            say(waiting)
        capacity = tuning.max_concurrent or max(
            1, int(session.cpus // max(res.cpus_per_trial, 1e-9)))
        task = ray.remote(execute_trial).options(
            num_cpus=res.cpus_per_trial, num_gpus=res.gpus_per_trial,
            max_retries=res.max_retries, retry_exceptions=False,
        )
        # The trial workers start now: their torch imports overlap the actors' start-up and
        # Ray hands the same (warm) workers the first trials.
        prestart = ray.remote(warm_worker).options(
            num_cpus=res.cpus_per_trial, num_gpus=res.gpus_per_trial)
        for _ in range(capacity):
            prestart.remote()
        node = ray.get_runtime_context().get_node_id()
        coord_cls: Any = ray.remote(num_cpus=0)(TuningCoordinator)
        coord: Any = coord_cls.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
        ).remote(store.url, plan, sweep.id)
        # Both actors start at once (each imports for a second or more); the writer handle
        # is kept: the actor lives as long as it.
        writer = start_writer(store.url, wait=False)
        used: dict[str, int] = ray.get(coord.recover.remote())
        ensure_ready(writer.handle)
        store.set_sweep_status(sweep.id, "running")
        finals_done = Counter(store.trials_frame(sweep.name, role="final", status=list(
            TERMINAL))["cell_key"])
        already = sum(min(u, budget) for u in used.values()) + sum(finals_done.values())
        bar = Progress(total - already, already, progress)
        in_flight: dict[Any, _Flight] = {}
        tuning_live: Counter[str] = Counter()
        finals_started: set[str] = set()
        counts: Counter[str] = Counter()
        metric = _pruning_metric(tuning)
        prune = tuning.pruner != "none"  # without a pruner, nothing waits on the tuner
        try:
            while True:
                # 1. finals of cells whose budget is spent (and nothing of theirs in flight)
                for key in plan_keys(plan):
                    if key in finals_started or used[key] < budget or tuning_live[key]:
                        continue
                    finals_started.add(key)
                    for trial_id, config in ray.get(coord.finals.remote(
                            key, res.cpus_per_trial, res.gpus_per_trial)):
                        ref = task.remote(trial_id, config, writer.name)
                        in_flight[ref] = _Flight("final", key, -1, trial_id)
                # 2. fill free slots with tuning trials, the cell with most budget left first
                while len(in_flight) < capacity:
                    open_cells = [k for k in plan_keys(plan)
                                  if used[k] + tuning_live[k] < budget]
                    if not open_cells:
                        break
                    key = max(open_cells, key=lambda k: budget - used[k] - tuning_live[k])
                    trial_id, number, config = ray.get(coord.ask.remote(key))
                    hook = PruningHook(coord, key, number, metric) if prune else None
                    ref = task.remote(trial_id, config, writer.name, hook)
                    in_flight[ref] = _Flight("tuning", key, number, trial_id)
                    tuning_live[key] += 1
                if not in_flight:
                    break
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                for ref in done:
                    f = in_flight.pop(ref)
                    status, lost = collect(ref, f.trial_id, store)
                    if f.kind == "tuning":
                        tuning_live[f.cell_key] -= 1
                        if ray.get(coord.tell.remote(f.cell_key, f.number, f.trial_id, lost)):
                            used[f.cell_key] += 1
                        else:
                            continue  # replaced: not progress
                    else:
                        ray.get(coord.record_final.remote(f.trial_id))
                    counts[status] += 1
                    bar.update(1, counts, len(in_flight))
        except KeyboardInterrupt:
            # Outcomes already returned are stored (the coordinator tells them to their
            # studies); trials still running are abandoned, not ray.cancel()led (see
            # stop_writer), and run again on resume.
            collect_returned({ref: f.trial_id for ref, f in in_flight.items()}, store, counts)
            stop_writer(writer.handle)
            n = ray.get(coord.abandon_running.remote())
            bar.close()
            store.set_sweep_status(sweep.id, "cancelled")
            say(f"cancelled: {n} unfinished trial(s) marked cancelled; run the same command "
                "again to resume (each study continues where it stopped)")
            return 130
        bar.close()
    store.set_sweep_status(sweep.id, "completed")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)
    say(f"finished: {summary or 'nothing left to run'}")
    say(f"best configs: bench results --sweep {sweep.name} --best{db_flag(store.url)}")
    return 0


def plan_keys(plan: SweepPlan) -> list[str]:
    return [c.cell_key for c in plan.cells]


def _pruning_metric(tuning: Any) -> str:
    from bench_service.sweep.tuning import pruning_metric

    return pruning_metric(tuning)
