"""``bench import deepobs`` and ``bench export deepobs``: DeepOBS result files in and out.

DeepOBS writes one JSON file per run (``testproblem``, ``batch_size``, ``num_epochs``,
``random_seed``, ``l2_reg``, ``optimizer_name``, ``optimizer_hyperparams``,
``training_params`` and per-epoch lists of ``num_epochs + 1`` train/valid/test losses and
accuracies, entry 0 measured at θ₀, plus ``minibatch_train_losses``); Crowded Valley published
its >50,000 runs in that format. Importing puts them into a sweep as trials of role
``imported`` with their curves, so the dashboard and leaderboard rank them beside the user's
own runs of the same problem:

* curves: ``train_losses`` → ``train_eval_loss``, ``valid_losses`` → ``val_loss``,
  ``test_losses`` → ``test_loss`` (accuracies likewise), at ``step = i · steps_per_epoch`` and
  ``epoch = i - 1`` (θ₀ at step 0, epoch -1: what our DeepOBS workloads record);
  ``minibatch_train_losses`` → step-scope ``train_loss`` (DeepOBS 1.x's TF runner appended
  each value twice; the pairs are folded and the repeat remembered for export); ``lr`` per
  epoch from the learning rate and ``training_params``' schedule.
* optimizer and hyperparameters mapped to ours where they exist (``AdamOptimizer`` →
  ``adam``, ``learning_rate`` → ``lr`` ...), kept verbatim where not; schedules ``constant`` or
  ``cosine`` when the factors are exactly those, else ``deepobs_schedule`` with the lists.
* ``quadratic_deep`` files are matched to the Hessian draw (``instance``) whose θ₀ test loss
  they recorded: DeepOBS 1.x drew a new Hessian for every problem built in one process, so
  some published files are of another problem than a fresh ``quadratic_deep``.

Everything a file held is kept in the trial's ``versions["imported"]``, so exporting an
imported trial writes the file it came from (same path, same values).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench_service.vocab import higher_is_better

#: DeepOBS list key → our metric name (per epoch, entry 0 at θ₀).
EPOCH_KEYS: dict[str, str] = {
    "train_losses": "train_eval_loss", "valid_losses": "val_loss", "test_losses": "test_loss",
    "train_accuracies": "train_eval_accuracy", "valid_accuracies": "val_accuracy",
    "test_accuracies": "test_accuracy",
}
MINIBATCH_KEY = "minibatch_train_losses"
#: Keys of a DeepOBS result file, in the order DeepOBS writes them.
HEADER_KEYS = ("testproblem", "batch_size", "num_epochs", "random_seed", "l2_reg",
               "optimizer_name", "optimizer_hyperparams", "training_params")
REQUIRED = ("testproblem", "batch_size", "num_epochs", "random_seed", "optimizer_name",
            "optimizer_hyperparams", "test_losses")


@dataclass(frozen=True)
class OptimizerMap:
    """How one DeepOBS optimizer name maps to one of ours: name and hyperparameter names."""

    ours: str
    params: Mapping[str, str]
    #: DeepOBS hyperparameters that are only TF bookkeeping (kept, never mapped).
    ignore: tuple[str, ...] = ("use_locking",)


#: DeepOBS (TensorFlow and PyTorch) optimizer names → ours.
OPTIMIZER_MAP: dict[str, OptimizerMap] = {
    "GradientDescentOptimizer": OptimizerMap("sgd", {"learning_rate": "lr"}),
    "SGD": OptimizerMap("sgd", {"lr": "lr"}),
    "MomentumOptimizer": OptimizerMap("momentum", {"learning_rate": "lr",
                                                   "momentum": "momentum"}),
    "AdamOptimizer": OptimizerMap("adam", {"learning_rate": "lr", "beta1": "beta1",
                                           "beta2": "beta2", "epsilon": "eps"}),
    "Adam": OptimizerMap("adam", {"lr": "lr"}),
    "AdagradOptimizer": OptimizerMap("adagrad", {"learning_rate": "lr"}),
    "AdadeltaOptimizer": OptimizerMap("adadelta", {"learning_rate": "lr", "rho": "rho",
                                                   "epsilon": "eps"}),
    "RMSPropOptimizer": OptimizerMap("rmsprop", {"learning_rate": "lr", "decay": "alpha",
                                                 "momentum": "momentum", "epsilon": "eps"}),
}
#: Our optimizer → the DeepOBS name export writes (the TF names Crowded Valley used).
EXPORT_NAMES = {"sgd": "GradientDescentOptimizer", "momentum": "MomentumOptimizer",
                "nesterov": "MomentumOptimizer", "adam": "AdamOptimizer",
                "adagrad": "AdagradOptimizer", "adadelta": "AdadeltaOptimizer",
                "rmsprop": "RMSPropOptimizer"}
#: DeepOBS test problems we have as workloads under the same name.
OUR_PROBLEMS = ("quadratic_deep", "mnist_logreg", "fmnist_2c2d", "cifar10_3c3d",
                "cifar100_allcnnc")
#: Hessian draws tried when matching a quadratic_deep file to its problem.
_MAX_INSTANCE = 8


class ImportFormatError(ValueError):
    """A file that is not a DeepOBS result (message names the file and the field)."""


# --------------------------------------------------------------------------- reading
@dataclass
class Imported:
    """One DeepOBS file, mapped: the axes, params, config and curve points of one trial."""

    path: str
    sha256: str
    workload: str
    workload_params: dict[str, Any]
    optimizer: str
    optimizer_params: dict[str, Any]
    scheduler: str
    scheduler_params: dict[str, Any]
    regularizer: str
    regularizer_params: dict[str, Any]
    seed: int
    batch_size: int
    epochs: int
    steps_per_epoch: int
    points: list[Any] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    status: str = "completed"


def _need(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise ImportFormatError(f"{where}: not a DeepOBS result file: no {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ImportFormatError(f"{where}: {key} must be {_kind_name(kind)}, got "
                                f"{str(value)[:60]!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _numbers(doc: Mapping[str, Any], key: str, where: str, length: int | None) -> list[float]:
    values = _need(doc, key, list, where)
    out: list[float] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise ImportFormatError(f"{where}: {key}[{i}] must be a number, got {str(v)[:40]!r}")
    if length is not None and len(out) != length:
        raise ImportFormatError(f"{where}: {key} has {len(out)} entries, expected {length} "
                                "(num_epochs + 1)")
    return out


def _steps_per_epoch(workload: str, params: Mapping[str, Any], batch_size: int) -> int | None:
    """Optimizer steps per epoch of one of our workloads at this batch size (None: unknown)."""
    from bench_service.engine.workloads import WORKLOADS, build_workload

    if workload not in WORKLOADS.names():
        return None
    try:
        wl = build_workload(workload, dict(params))
        n = wl.train_size() if hasattr(wl, "train_size") else wl.data().n_train
    except Exception:  # data not fetched: fall back to the file's own log count
        return None
    steps = n // batch_size
    if not wl.drop_last and n % batch_size > 1:
        steps += 1
    return steps


_THETA0_TEST: dict[tuple[int, str], float] = {}


def quadratic_deep_instance(theta0_test_loss: float) -> int | None:
    """The Hessian draw whose θ₀ test loss a quadratic_deep file recorded (None: none)."""
    import torch

    from bench_service.engine.workloads import ArchOptions, build_workload

    for instance in range(1, _MAX_INSTANCE + 1):
        key = (instance, "one_stream")
        if key not in _THETA0_TEST:
            wl = build_workload("quadratic_deep", {"instance": instance})
            x, y = wl.data().eval_splits["test"]
            with torch.no_grad():
                model = wl.init_model(0, ArchOptions()).eval()
                _THETA0_TEST[key] = wl.evaluate(model, x, y)["val_loss"]
        if math.isclose(_THETA0_TEST[key], theta0_test_loss, rel_tol=1e-5):
            return instance
    return None


def _schedule(training: Mapping[str, Any], epochs: int) -> tuple[str, dict[str, Any]]:
    sched_epochs = list(training.get("lr_sched_epochs") or [])
    factors = list(training.get("lr_sched_factors") or [])
    if not sched_epochs and not factors:
        return "constant", {}
    cosine = [0.5 * (1 + math.cos(math.pi * e / epochs)) for e in range(1, epochs + 1)]
    if sched_epochs == list(range(1, epochs + 1)) and len(factors) == epochs and all(
            math.isclose(f, c, rel_tol=1e-9, abs_tol=1e-12) for f, c in zip(factors, cosine,
                                                                            strict=True)):
        return "cosine", {"T_max": epochs, "eta_min": 0.0}
    return "deepobs_schedule", {"lr_sched_epochs": sched_epochs, "lr_sched_factors": factors}


def _lr_at(epoch: int, lr0: float, training: Mapping[str, Any]) -> float:
    """DeepOBS's schedule: the factor of the last ``lr_sched_epochs`` entry ≤ ``epoch``."""
    factor = 1.0
    for e, f in zip(training.get("lr_sched_epochs") or [], training.get("lr_sched_factors")
                    or [], strict=False):
        if e <= epoch:
            factor = float(f)
    return lr0 * factor


def read_result(path: Path, root: Path) -> Imported:
    """Parse and map one DeepOBS result file; ``ImportFormatError`` names what is wrong."""
    from bench_service.engine.records import MetricPoint

    rel = path.relative_to(root).as_posix()
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFormatError(f"{rel}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ImportFormatError(f"{rel}: not a DeepOBS result file: not a JSON object")
    problem = _need(doc, "testproblem", str, rel)
    batch_size = _need(doc, "batch_size", int, rel)
    epochs = _need(doc, "num_epochs", int, rel)
    seed = _need(doc, "random_seed", int, rel)
    opt_name = _need(doc, "optimizer_name", str, rel)
    hyper = _need(doc, "optimizer_hyperparams", dict, rel)
    training = doc.get("training_params") or {}
    if not isinstance(training, dict):
        raise ImportFormatError(f"{rel}: training_params must be an object")
    if batch_size < 1 or epochs < 1:
        raise ImportFormatError(f"{rel}: batch_size and num_epochs must be >= 1")
    curves = {ours: _numbers(doc, key, rel, epochs + 1)
              for key, ours in EPOCH_KEYS.items() if key in doc}
    if "test_loss" not in curves:
        raise ImportFormatError(f"{rel}: not a DeepOBS result file: no 'test_losses'")
    minibatch = _numbers(doc, MINIBATCH_KEY, rel, None) if MINIBATCH_KEY in doc else []
    repeat = 2 if minibatch and len(minibatch) % 2 == 0 and all(
        _same(minibatch[i], minibatch[i + 1]) for i in range(0, len(minibatch), 2)) else 1
    minibatch = minibatch[::repeat]

    workload_params: dict[str, Any] = {}
    workload = problem
    if problem == "quadratic_deep":
        instance = quadratic_deep_instance(curves["test_loss"][0])
        if instance is None:
            workload = f"quadratic_deep(theta0_test_loss={curves['test_loss'][0]:.6g})"
        elif instance > 1:
            workload_params = {"instance": instance}
            workload = f"quadratic_deep(instance={instance})"

    mapped = OPTIMIZER_MAP.get(opt_name)
    optimizer, opt_params = opt_name, dict(hyper)
    if mapped is not None:
        optimizer = mapped.ours
        if opt_name == "MomentumOptimizer" and hyper.get("use_nesterov"):
            optimizer = "nesterov"
        opt_params = {mapped.params.get(k, k): v for k, v in hyper.items()
                      if k not in mapped.ignore and k != "use_nesterov"}
    scheduler, sched_params = _schedule(training, epochs)
    l2_key = "l2_reg" if "l2_reg" in doc else ("weight_decay" if "weight_decay" in doc else None)
    l2 = doc.get(l2_key) if l2_key else None
    regularizer, reg_params = ("none", {}) if not l2 else ("l2", {"strength": float(l2) / 2})

    spe = (_steps_per_epoch(problem, workload_params, batch_size) if problem in OUR_PROBLEMS
           else None)
    per_epoch = len(minibatch) // epochs if minibatch else 0
    if spe is None:
        spe = max(per_epoch, 1)
    points: list[MetricPoint] = []
    for name, values in curves.items():
        for i, v in enumerate(values):
            points.append(MetricPoint(name, v, i * spe, i - 1, 0.0, "epoch"))
    interval = max(spe // per_epoch, 1) if per_epoch else 1
    for j, v in enumerate(minibatch):
        epoch, within = divmod(j, per_epoch) if per_epoch else (0, j)
        points.append(MetricPoint("train_loss", v, epoch * spe + within * interval + 1, epoch,
                                  0.0, "step"))
    lr0 = hyper.get("learning_rate", hyper.get("lr"))
    if isinstance(lr0, (int, float)) and not isinstance(lr0, bool):
        for e in range(epochs):
            points.append(MetricPoint("lr", _lr_at(e, float(lr0), training), e * spe, e, 0.0,
                                      "epoch"))
    status = "diverged" if any(not math.isfinite(v) for v in curves["test_loss"]) else \
        "completed"
    sha256 = hashlib.sha256(raw).hexdigest()
    source: dict[str, Any] = {
        "format": "deepobs", "file": rel, "sha256": sha256,
        "header": {k: doc[k] for k in doc if k not in EPOCH_KEYS and k != MINIBATCH_KEY},
        "keys": list(doc), "minibatch_repeat": repeat,
    }
    return Imported(rel, sha256, workload, workload_params, optimizer, opt_params,
                    scheduler, sched_params, regularizer, reg_params, seed, batch_size, epochs,
                    spe, points, source, status)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def find_results(directory: Path) -> list[Path]:
    """Every ``*.json`` under ``directory``, in path order."""
    return sorted(p for p in directory.rglob("*.json") if p.is_file())


# --------------------------------------------------------------------------- import
def _summary(points: Iterable[Any]) -> tuple[dict[str, float], dict[str, float]]:
    """``final``/``best`` as the runner computes them: a metric's epoch points if it has any."""
    epoch_vals: dict[str, list[float]] = {}
    step_vals: dict[str, list[float]] = {}
    for p in points:
        (epoch_vals if p.scope == "epoch" else step_vals).setdefault(p.name, []).append(p.value)
    final: dict[str, float] = {}
    best: dict[str, float] = {}
    for name in sorted(set(epoch_vals) | set(step_vals)):
        vals = epoch_vals.get(name) or step_vals[name]
        final[name] = vals[-1]
        finite = [v for v in vals if math.isfinite(v)]
        best[name] = ((max(finite) if higher_is_better(name) else min(finite)) if finite
                      else math.nan)
    return final, best


def _new_trial(item: Imported) -> Any:
    from bench_service.engine.config import Budget, Component, TrialConfig
    from bench_service.store import NewTrial

    config = TrialConfig(
        workload=Component(item.workload.split("(")[0], item.workload_params),
        optimizer=Component(item.optimizer, item.optimizer_params),
        scheduler=Component(item.scheduler, item.scheduler_params),
        regularizer=Component(item.regularizer, item.regularizer_params),
        seed=item.seed, budget=Budget(epochs=item.epochs), batch_size=item.batch_size,
    ).to_dict()
    cell = dict(config)
    del cell["seed"]
    cell["imported"] = "deepobs"
    cell_key = hashlib.sha256(json.dumps(cell, sort_keys=True, default=str).encode()).hexdigest()
    params = {
        "workload": item.workload_params, "optimizer": item.optimizer_params,
        "scheduler": item.scheduler_params, "regularizer": item.regularizer_params,
        "batch_size": item.batch_size, "epochs": item.epochs,
        "total_steps": item.epochs * item.steps_per_epoch, "source": "deepobs",
    }
    return NewTrial(
        trial_hash=hashlib.sha256(f"imported:deepobs:{item.sha256}".encode()).hexdigest(),
        cell_key=cell_key, workload=item.workload, optimizer=item.optimizer,
        scheduler=item.scheduler, regularizer=item.regularizer, seed=item.seed,
        config=config, params=params, role="imported",
    )


def import_deepobs(directory: Path, sweep: str, db: str | None,
                   out: Any = sys.stdout) -> int:
    """Read every DeepOBS file under ``directory`` into ``sweep``; returns how many are new.

    Every file is parsed and mapped before anything is written: one bad file is one line
    naming it and nothing is stored. Re-importing a file stores nothing twice (its trial's
    identity is the file's SHA-256).
    """
    from bench_service.store import Store

    if not directory.is_dir():
        raise ImportFormatError(f"{str(directory)[:300]}: no such directory")
    files = find_results(directory)
    if not files:
        raise ImportFormatError(f"{str(directory)[:300]}: no .json result files under it")
    items = [read_result(p, directory) for p in files]
    trials = [_new_trial(i) for i in items]
    store = Store(db)
    try:
        store.check_writable()
        existing = store.get_sweep(sweep)
        if existing is None:
            spec = {"name": sweep, "imported": {"format": "deepobs", "from": str(directory)}}
            # The spec hash of an imported sweep: no spec file can ever hash to it.
            digest = hashlib.sha256(("imported:" + "".join(i.sha256 for i in items)).encode())
            info = store.create_sweep(sweep, spec, digest.hexdigest(), trials,
                                      description=f"DeepOBS results imported from "
                                                  f"{directory.name}")
            rows = store.add_trials(info.id, trials)
            fresh = rows
        else:
            info = existing
            known = {t.trial_hash for t in store.trials_to_run(info.id, ("completed",
                                                                           "diverged"))}
            rows = store.add_trials(info.id, trials)
            fresh = [r for r in rows if r.trial_hash not in known]
        fresh_ids = {r.id for r in fresh if r.status == "pending"}
        for item, row in zip(items, rows, strict=True):
            if row.id not in fresh_ids:
                continue
            final, best = _summary(item.points)
            store.finish_trial(row.id, {
                "status": item.status, "final": final, "best": best,
                "steps": item.epochs * item.steps_per_epoch, "epochs": item.epochs,
                "wall_time": None, "device": None,
            }, item.points, start={"host": "imported", "versions": {"imported": item.source}})
        if existing is None:
            store.set_sweep_status(info.id, "completed")
        n_new = len(fresh_ids)
        print(f"imported {n_new} DeepOBS result(s) into sweep {sweep!r} "
              f"({len(items) - n_new} already there) from {len(files)} file(s)", file=out)
        return n_new
    finally:
        store.close()


# --------------------------------------------------------------------------- export
def _float_dir(value: Any) -> str:
    """DeepOBS's way of writing a number into a directory name (``1.e-02``)."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return str(np.format_float_scientific(value, trim=".", exp_digits=2))


def _curve(points: Any, name: str, scope: str) -> list[float]:
    rows = points[(points["name"] == name) & (points["scope"] == scope)].sort_values("step")
    return [float(v) for v in rows["value"]]


def result_document(trial: Any, points: Any) -> tuple[str, dict[str, Any]]:
    """The DeepOBS file of one trial: its relative path and its JSON object."""
    imported = (trial.versions or {}).get("imported") if trial.versions else None
    curves = {key: _curve(points, ours, "epoch") for key, ours in EPOCH_KEYS.items()}
    minibatch = _curve(points, "train_loss", "step")
    if imported:
        header = dict(imported["header"])
        repeat = int(imported.get("minibatch_repeat", 1))
        doc: dict[str, Any] = {}
        for key in imported["keys"]:
            if key in header:
                doc[key] = header[key]
            elif key in EPOCH_KEYS:
                doc[key] = curves[key]
            elif key == MINIBATCH_KEY:
                doc[key] = [v for v in minibatch for _ in range(repeat)]
        return str(imported["file"]), doc
    params = trial.params or {}
    opt = dict(params.get("optimizer") or trial.config.get("optimizer", {}).get("params", {}))
    name = EXPORT_NAMES.get(trial.optimizer, trial.optimizer)
    mapped = OPTIMIZER_MAP.get(name)
    back = {v: k for k, v in mapped.params.items()} if mapped else {}
    hyper = {back.get(k, k): v for k, v in opt.items()}
    if trial.optimizer in ("momentum", "nesterov"):
        hyper["use_nesterov"] = trial.optimizer == "nesterov"
    epochs = int(params.get("epochs") or trial.epochs or 0)
    training: dict[str, Any] = {"lr_sched_epochs": [], "lr_sched_factors": []}
    lrs = _curve(points, "lr", "epoch")
    if trial.scheduler != "constant" and lrs and lrs[0]:
        training = {"lr_sched_epochs": list(range(1, len(lrs))),
                    "lr_sched_factors": [v / lrs[0] for v in lrs[1:]]}
    reg = params.get("regularizer") or {}
    doc = {
        "testproblem": trial.workload, "batch_size": int(params.get("batch_size") or 0),
        "num_epochs": epochs, "random_seed": int(trial.seed),
        "l2_reg": 2 * reg["strength"] if trial.regularizer == "l2" else None,
        "optimizer_name": name, "optimizer_hyperparams": hyper, "training_params": training,
    }
    for key in EPOCH_KEYS:
        if curves[key]:
            doc[key] = curves[key]
    doc[MINIBATCH_KEY] = minibatch
    folder = "__".join(f"{k}__{_float_dir(v)}" for k, v in
                       [("num_epochs", epochs), ("batch_size", doc["batch_size"]),
                        *sorted(hyper.items())])
    stamp = (trial.finished_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d-%H-%M-%S")
    schedule = "none" if trial.scheduler == "constant" else trial.scheduler
    rel = f"{schedule}/{trial.workload}/{name}/{folder}/random_seed__{trial.seed}__{stamp}.json"
    return rel, doc


def export_deepobs(sweep: str, output: Path, db: str | None, out: Any = sys.stdout) -> int:
    """Write every finished trial of ``sweep`` as a DeepOBS result file under ``output``."""
    from bench_service.store import Store

    with Store.open_existing(db) as store:
        info = store.get_sweep(sweep)
        if info is None:
            raise ImportFormatError(f"unknown sweep {sweep[:200]!r}")
        trials = store.trials_to_run(info.id, ("completed", "diverged"))
        if not trials:
            raise ImportFormatError(f"sweep {sweep!r} has no finished trials to export")
        curves = store.curves_frame(sweep, trial_ids=[t.id for t in trials])
    written = 0
    for trial in trials:
        rel, doc = result_document(trial, curves[curves["trial_id"] == trial.id])
        target = output / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc), encoding="utf-8")
        written += 1
    print(f"wrote {written} DeepOBS result file(s) to {output}", file=out)
    return written


# --------------------------------------------------------------------------- commands
def cmd_import(args: argparse.Namespace) -> int:
    """``bench import deepobs DIR --sweep NAME``; ``ImportFormatError`` for bad input."""
    import_deepobs(Path(args.directory), args.sweep, args.db)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``bench export deepobs --sweep NAME -o DIR``; ``ImportFormatError`` for bad input."""
    export_deepobs(args.sweep, Path(args.output), args.db)
    return 0
