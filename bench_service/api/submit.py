"""Submitting and cancelling sweeps: the service's two writes.

A submission is validated exactly as ``bench run`` validates a spec file (``sweep.yaml_io``'s
bounded safe YAML, ``sweep.loading.parse_spec`` with its registry and size checks, then the
planner), and refused over the server's own trial limit, all before anything is stored. Then
the sweep is stored (spec, trials, submitter, job state ``queued``) and started as a Ray Job;
a sweep already stored under that name with the same spec is resumed by a new job.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from bench_service.api.auth import User
from bench_service.api.jobs import ClusterError, JobRunner
from bench_service.api.problems import ProblemError
from bench_service.engine.errors import ConfigError
from bench_service.store import Store
from bench_service.store._types import utcnow
from bench_service.store.service import set_job
from bench_service.vocab import JOB_TERMINAL

#: Default most trials one submitted sweep may have (``--max-trials``).
DEFAULT_API_MAX_TRIALS = 10_000
#: One submission at a time per server: two requests racing on the same name must not both
#: create the sweep or both start a job.
_SUBMIT_LOCK = threading.Lock()


def parse_body(body: bytes, content_type: str) -> Any:
    """The spec document of a request body: JSON, or YAML (bounded, safe) for any YAML or
    text content type.

    Raises:
        ProblemError: 415 for another content type, 422 for text that does not parse.
    """
    from bench_service.sweep.errors import SpecError
    from bench_service.sweep.yaml_io import parse_yaml

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(422, "invalid-spec", f"spec: the body is not UTF-8 text ({exc})",
                           [("spec", "not UTF-8")]) from None
    if content_type in ("application/json", ""):
        try:
            return json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            raise ProblemError(422, "invalid-spec", "spec: the JSON is nested too deeply",
                               [("spec", "nested too deeply")]) from None
        except ValueError as exc:
            raise ProblemError(422, "invalid-spec", f"spec: invalid JSON: {exc}"[:300],
                               [("spec", f"invalid JSON: {exc}"[:300])]) from None
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
                        "text/plain"):
        try:
            return parse_yaml(text)
        except SpecError as exc:
            raise _spec_problem(exc) from None
    raise ProblemError(415, "unsupported-media-type",
                       f"content type {content_type[:80]!r} is not accepted; send the spec as "
                       "application/json or application/yaml")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _spec_problem(exc: Any) -> ProblemError:
    return ProblemError(422, "invalid-spec", str(exc), list(exc.errors))


def submit_sweep(store: Store, runner: JobRunner, data: Any, user: User,
                 max_trials: int) -> tuple[dict[str, Any], int]:
    """Validate, store and start one sweep; ``(body, HTTP status)``.

    Raises:
        ProblemError: 422 invalid spec (field path), 409 a different spec under the name or
            a job still running it, 403 resuming another user's sweep, 503 no cluster.
    """
    from bench_service.cluster.driver import sweep_run
    from bench_service.sweep import diff_specs, parse_spec, plan_sweep
    from bench_service.sweep.errors import SpecError
    from bench_service.sweep.size import count_trials

    try:
        spec = parse_spec(data)
        trials = count_trials(spec)
        if trials > max_trials:
            raise SpecError("max_trials", (
                f"the sweep has {trials:,} trials, over this server's limit of "
                f"{max_trials:,} per submitted sweep; nothing was stored"))
        plan = plan_sweep(spec)
        if plan.spec.tuning is not None:
            from bench_service.store import check_optuna_schema

            check_optuna_schema(store.url)
    except SpecError as exc:
        raise _spec_problem(exc) from None
    except ConfigError as exc:
        field = getattr(exc, "field", "") or "spec"
        raise ProblemError(422, "invalid-spec", str(exc),
                           [(field, getattr(exc, "message", str(exc)))]) from None
    with _SUBMIT_LOCK:
        existing = store.get_sweep(plan.name)
        resumed = existing is not None
        if existing is not None:
            if existing.spec_hash != plan.spec_hash:
                changes = diff_specs(existing.spec, plan.spec_dict)
                raise ProblemError(
                    409, "sweep-exists",
                    f"sweep {plan.name!r} already exists with a different spec; submit it "
                    "under a new name, or restore the spec to resume it",
                    [("spec", c) for c in changes] or [("spec", "normalised spec differs")])
            if not (user.admin or existing.submitter == user.name):
                raise ProblemError(403, "forbidden",
                                   f"sweep {plan.name!r} was submitted by "
                                   f"{existing.submitter or 'bench run'}; only they or an "
                                   "admin may resume it")
            if existing.job_id and existing.job_state not in JOB_TERMINAL | {None}:
                state = runner.refresh(store, existing.name, existing.job_id)
                if state is None or state not in JOB_TERMINAL:
                    raise ProblemError(409, "sweep-running",
                                       f"sweep {plan.name!r} is already running as Ray Job "
                                       f"{existing.job_id}")
            submitter = existing.submitter or user.name
        else:
            sweep_run(plan, store).register()
            submitter = user.name
        set_job(store, plan.name, submitter=submitter, job_id=None, job_state="queued",
                job_message=None, job_submitted_at=utcnow())
        try:
            job_id = runner.submit(plan.name)
        except ClusterError as exc:
            message = f"cannot start the job on the Ray cluster at {runner.address}: {exc}"
            set_job(store, plan.name, job_state="failed", job_message=message[:2000])
            raise ProblemError(503, "cluster-unavailable",
                               f"{message}; the sweep is stored: submit it again to start "
                               "it") from None
        set_job(store, plan.name, job_id=job_id)
    info = store.get_sweep(plan.name)
    assert info is not None
    return ({"name": plan.name, "job_id": job_id, "state": info.job_state,
             "resumed": resumed, "n_trials": info.n_trials}, 200 if resumed else 201)


def cancel_sweep(store: Store, runner: JobRunner, name: str, user: User,
                 stop_wait: float) -> dict[str, Any]:
    """Stop the sweep's job and mark its unfinished trials ``cancelled``.

    Raises:
        ProblemError: 404 no such sweep, 403 not the submitter nor an admin, 409 no job
            running it.
    """
    sweep = store.get_sweep(name)
    if sweep is None:
        raise ProblemError(404, "unknown-sweep", f"unknown sweep {name[:200]!r}")
    if not (user.admin or sweep.submitter == user.name):
        raise ProblemError(403, "forbidden", f"sweep {name!r} was submitted by "
                           f"{sweep.submitter or 'bench run'}; only they or an admin may "
                           "cancel it")
    if not sweep.job_id or sweep.job_state in JOB_TERMINAL:
        raise ProblemError(409, "not-running",
                           f"sweep {name!r} has no running job to cancel (job state: "
                           f"{sweep.job_state or 'none'})")
    try:
        runner.stop(sweep.job_id)
    except ClusterError as exc:
        raise ProblemError(503, "cluster-unavailable",
                           f"cannot stop job {sweep.job_id}: {exc}") from None
    runner.wait_ended(sweep.job_id, stop_wait)
    store.mark_unfinished(sweep.id, "cancelled")
    current = store.get_sweep(name)
    if current is not None and current.status in ("pending", "running"):
        store.set_sweep_status(sweep.id, "cancelled")
    set_job(store, name, job_state="cancelled")
    return {"name": name, "job_id": sweep.job_id, "state": "cancelled",
            "cancelled_trials": current.counts.get("cancelled", 0) if current else 0}


def clean(value: Any) -> Any:
    """``value`` as JSON can hold it: non-finite floats as ``"nan"``/``"inf"``/``"-inf"``,
    datetimes as ISO 8601 text, tuples as lists."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # NumPy scalars
        return clean(value.item())
    return value


__all__ = ["DEFAULT_API_MAX_TRIALS", "cancel_sweep", "clean", "parse_body", "submit_sweep"]
