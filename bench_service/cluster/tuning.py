"""Tuned sweeps as a trial source: ask-and-tell across every cell's Optuna study, then finals.

One ``TuningCoordinator`` actor, pinned to the driver's node, owns every study of the sweep
(Optuna's RDB storage in the sweep's database) and the tuning rows of the results store.
``TuningSource`` feeds the driver loop (``cluster.loop``): it keeps at most ``concurrency``
trials running (``tuning.max_concurrent``, else the cluster's trial slots counted over every
resource a trial requests), asks the coordinator for the next trial of the cell with the most
budget left (the task reports each epoch's validation metric to the coordinator for pruning),
and tells each outcome back. When a cell's budget is spent, its best config is re-run on
``final_seeds``.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Literal

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from bench_service.cluster.loop import Cancelled, Job, SweepOutcome, TaskResources, pack_of
from bench_service.cluster.runs import Say, db_flag, size_note
from bench_service.cluster.tasks import PruningHook, warm_worker
from bench_service.vocab import TRIAL_FINISHED

if TYPE_CHECKING:
    from bench_service.store import Store, SweepInfo
    from bench_service.sweep import SweepPlan
    from bench_service.sweep.spec import TuningSpec


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
        stored = {s.study_name for s in storage.get_all_studies()}
        for key, cell in self.cells.items():
            epochs = self._epochs(cell)
            name = T.study_name(plan.name, cell)
            legacy = f"{plan.name}/{cell.label}"  # unshortened: SQLite never refused it
            self.studies[key] = optuna.create_study(
                storage=storage, study_name=legacy if legacy in stored else name,
                direction=direction, sampler=T.make_sampler(self.tuning, cell),
                pruner=T.make_pruner(self.tuning, epochs), load_if_exists=True,
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
            if row is not None and row.status in TRIAL_FINISHED:
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
        """Tell a stored outcome to the study; the row's objective is the value Optuna then
        holds (stored first: a driver that dies in between is settled by ``recover``)."""
        from optuna.trial import TrialState

        row = self.store.trial(trial_id)
        study = self.studies[cell_key]
        value: float | None = None
        if row.status == "pruned":  # Optuna's value is its last intermediate value
            storage = study._storage
            value = self.T.pruned_value(storage.get_trial(
                storage.get_trial_id_from_study_id_trial_number(study._study_id, number)))
            self.store.set_objective(trial_id, value)
            study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        elif row.status in ("completed", "diverged"):
            value = self.T.objective_value(row.status, row.final, row.time_to_target,
                                           self.tuning)
            self.store.set_objective(trial_id, value)
            study.tell(number, value, skip_if_finished=True)
        else:  # failed in user code: a crash still spends budget (counted), no value
            self.store.set_objective(trial_id, None)
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
        # The summary counts what the budget counts: the counted Optuna trials (a trial lost
        # and replaced ran in vain and is not one of the cell's trials) and what they ran.
        counted = {t.number for t in T.counted_trials(study)}
        tuned = self.store.trials_frame(self.plan.name, role="tuning")
        tuned = tuned[(tuned["cell_key"] == cell_key) & tuned["number"].isin(counted)]
        seconds = float(tuned["wall_time"].fillna(0.0).sum())
        self.store.upsert_cell(
            self.sweep_id, cell_key, label=T.shorten(cell.label, T.MAX_CELL_LABEL),
            workload=cell.workload, optimizer=cell.optimizer, scheduler=cell.scheduler,
            regularizer=cell.regularizer, study_name=study.study_name,
            objective_metric=self.tuning.objective.metric,
            objective_mode=self.tuning.objective.mode,
            n_tuning=len(counted), n_pruned=int((tuned["status"] == "pruned").sum()),
            n_diverged=int((tuned["status"] == "diverged").sum()),
            best_value=best_value, best_params=params, importance=T.importance(study),
            tuning_cpu_seconds=seconds * cpus_per_trial,
            tuning_gpu_seconds=seconds * gpus_per_trial,
        )
        for r in rows:  # finished before an interruption, perhaps without its objective
            if r.status in TRIAL_FINISHED:
                self.record_final(r.id)
        return [(r.id, r.config) for r in rows if r.status not in TRIAL_FINISHED]

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



def tuning_concurrency(tuning: TuningSpec, capacity: int) -> int:
    """How many tuning trials run at once: ``max_concurrent`` if the spec sets it, else the
    cluster's trial slots (``capacity``, counted over every resource a trial requests). A
    trial asked while none of its resources is free would wait in Ray's queue, sampled
    knowing less than it could."""
    return tuning.max_concurrent or capacity


class TuningSource:
    """The loop's source for a tuned sweep: tuning trials from the coordinator, then each
    cell's finals once its budget is spent and none of its trials runs."""

    def __init__(self, plan: SweepPlan, store: Store, sweep_id: int,
                 resources: TaskResources, *, capacity: int) -> None:
        from bench_service.sweep.tuning import pruning_metric

        tuning = plan.spec.tuning
        assert tuning is not None
        self.plan, self.store, self.sweep_id, self.resources = plan, store, sweep_id, resources
        self.budget = tuning.trials_per_cell
        self.capacity = capacity
        self.concurrency = tuning_concurrency(tuning, capacity)
        self.keys = [c.cell_key for c in plan.cells]
        self.total = len(self.keys) * (self.budget + len(plan.spec.final_seeds))
        self.metric = pruning_metric(tuning)
        self.prune = tuning.pruner != "none"  # without a pruner, nothing waits on the tuner
        self.coord: Any = None
        self.used: dict[str, int] = {}
        self.live: Counter[str] = Counter()  # tuning trials handed out, per cell
        self.finals_running = 0
        self.finals_started: set[str] = set()
        self.finals_queue: deque[Job] = deque()
        self.done = 0  # trials that count: tuning within budget, finals finished
        from bench_service.cluster.packing import pack_size

        #: Tuning trials per pack (0: unpacked); with packing, ``concurrency`` counts packs.
        self.pack = pack_size(plan.spec.execution.pack, {"device": plan.spec.device})

    def start(self) -> tuple[int, int]:
        res = self.resources
        # The trial workers start now: their torch imports overlap the coordinator's start-up
        # and Ray hands the same (warm) workers the first trials.
        prestart = ray.remote(warm_worker).options(num_cpus=res.cpus_per_trial,
                                                   num_gpus=res.gpus_per_trial)
        for _ in range(min(self.concurrency, self.capacity)):
            prestart.remote()
        node = ray.get_runtime_context().get_node_id()
        coord_cls: Any = ray.remote(num_cpus=0)(TuningCoordinator)
        self.coord = coord_cls.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
        ).remote(self.store.url, self.plan, self.sweep_id)
        self.used = ray.get(self.coord.recover.remote())
        finals = self.store.trials_frame(self.plan.name, role="final",
                                         status=list(TRIAL_FINISHED))
        self.done = sum(min(u, self.budget) for u in self.used.values()) + len(finals)
        return self.total, self.done

    def next_jobs(self, free: int) -> list[Job]:
        # 1. finals of cells whose budget is spent (and nothing of theirs running)
        for key in self.keys:
            if key in self.finals_started or self.used[key] < self.budget or self.live[key]:
                continue
            self.finals_started.add(key)
            res = self.resources
            for trial_id, config in ray.get(self.coord.finals.remote(
                    key, res.cpus_per_trial, res.gpus_per_trial)):
                self.finals_queue.append(Job(trial_id, config, role="final", cell_key=key))
        jobs: list[Job] = []
        while self.finals_queue and len(jobs) < free:
            jobs.append(self.finals_queue.popleft())
        self.finals_running += len(jobs)
        # 2. tuning trials into free slots, the cell with most budget left first
        while len(jobs) < free and self._running() < self.concurrency * max(self.pack, 1):
            open_cells = [k for k in self.keys if self.used[k] + self.live[k] < self.budget]
            if not open_cells:
                break
            key = max(open_cells, key=lambda k: self.budget - self.used[k] - self.live[k])
            left = self.budget - self.used[key] - self.live[key]
            members: list[Job] = []
            # Packed: Optuna's batch ask, K trials of the cell asked before any is told, so
            # an equal-budget tuning packs too (the sampler sees the same history for all K).
            for _ in range(min(self.pack, left) if self.pack else 1):
                trial_id, number, config = ray.get(self.coord.ask.remote(key))
                hook = PruningHook(self.coord, key, number, self.metric) if self.prune else None
                members.append(Job(trial_id, config, role="tuning", cell_key=key,
                                   number=number, pruning=hook))
                self.live[key] += 1
            jobs.append(pack_of(members) if self.pack else members[0])
        return jobs

    def _running(self) -> int:
        return sum(self.live.values()) + self.finals_running

    def on_done(self, job: Job, status: str, lost: bool) -> bool:
        if job.role == "tuning":
            self.live[job.cell_key] -= 1
            if not ray.get(self.coord.tell.remote(job.cell_key, job.number, job.trial_id,
                                                  lost)):
                return False  # lost and replaced: not progress
            self.used[job.cell_key] += 1
        else:
            self.finals_running -= 1
            ray.get(self.coord.record_final.remote(job.trial_id))
        self.done += 1
        return True

    def finished(self) -> bool:
        return (len(self.finals_started) == len(self.keys) and not self.finals_queue
                and self._running() == 0)

    def on_cancel(self) -> Cancelled:
        # Outcomes already returned were told (on_done); the coordinator settles every
        # trial asked and not told by its stored row, and marks the unfinished cancelled.
        marked = int(ray.get(self.coord.abandon_running.remote())) if self.coord else 0
        return Cancelled(marked, self.total - self.done)


class TunedRun:
    """A tuned sweep: no trials up front (the coordinator adds them as Optuna asks); a
    resume continues each cell's study."""

    def __init__(self, plan: SweepPlan, store: Store, say: Say) -> None:
        self.plan, self.store, self.say = plan, store, say
        self.resumed = False

    def register(self) -> SweepInfo:
        from bench_service.store import mask_url

        plan, tuning = self.plan, self.plan.spec.tuning
        assert tuning is not None
        budget, seeds = tuning.trials_per_cell, plan.spec.final_seeds
        sweep = self.store.get_sweep(plan.name)
        self.resumed = sweep is not None
        if sweep is None:
            sweep = self.store.create_sweep(plan.name, plan.spec_dict, plan.spec_hash, [])
        self.sweep = sweep
        total = len(plan.cells) * (budget + len(seeds))
        self.say(f"{'resuming ' if self.resumed else ''}tuned sweep {sweep.name!r}: "
                 f"{len(plan.cells)} cells × ({budget} tuning trials + {len(seeds)} final "
                 f"seeds) = {total} trials{size_note(plan)}, {tuning.sampler} sampler, "
                 f"{tuning.pruner} pruner, in {mask_url(self.store.url)}")
        return sweep

    def nothing_left(self) -> bool:
        """Every cell's budget spent and its finals run, as the store's rows show: the
        cell's summary row is written when its finals are registered, which happens only
        once its budget is spent and none of its tuning trials runs."""
        if not self.resumed:
            return False
        plan, store = self.plan, self.store
        cells = set(store.cells_frame(plan.name)["cell_key"])
        if not {c.cell_key for c in plan.cells} <= cells:
            return False
        finals = store.trials_frame(plan.name, role="final")
        finished = finals[finals["status"].isin(list(TRIAL_FINISHED))]
        if len(finished) < len(finals) or len(finals) < len(plan.cells) * len(
                plan.spec.final_seeds):
            return False
        self._record_missing_objectives(finished)
        self.say("nothing to run: every cell's budget is spent and its finals have run")
        return True

    def _record_missing_objectives(self, finals: Any) -> None:
        """A final stored just before an interruption may lack its objective (its driver was
        interrupted before recording it); a diverged one's is NULL anyway (worst = inf)."""
        from bench_service.sweep.tuning import objective_value

        tuning = self.plan.spec.tuning
        assert tuning is not None
        for r in finals[finals["objective"].isna()].itertuples():
            value = objective_value(str(r.status), r.final, None if _isnan(r.time_to_target)
                                    else float(r.time_to_target), tuning)
            self.store.set_objective(int(r.trial_id), value)

    def source(self, capacity: int) -> TuningSource:
        res = self.plan.spec.resources
        return TuningSource(self.plan, self.store, self.sweep.id,
                            TaskResources(res.cpus_per_trial, res.gpus_per_trial,
                                          res.max_retries), capacity=capacity)

    def report(self, outcome: SweepOutcome, store: Store) -> int:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items()) if v)
        self.say(f"finished: {summary or 'nothing left to run'}")
        self.say(f"best configs: bench results --sweep {self.sweep.name} --best"
                 f"{db_flag(store.url)}")
        return 0


def _isnan(value: Any) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True
