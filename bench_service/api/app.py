"""The HTTP API of ``bench serve`` (FastAPI): submit sweeps, watch them, query results.

Reads go through ``store`` queries (pages and downsampled curves cut in SQL); the two writes
(submit, cancel) live in ``api.submit``; Ray Jobs in ``api.jobs``. Every error is a problem
details body (``api.problems``). Blocking work (SQL, planning, Ray's HTTP client) runs in
the thread pool, so one slow request never stalls the event loop.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
run time, and the dependencies (``Writer``, ``Reader``) are local to ``create_app``.
"""

import io
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from bench_service.api import models, problems
from bench_service.api.auth import Tokens, User
from bench_service.api.jobs import ClusterError, JobRunner
from bench_service.api.limits import MAX_BODY_BYTES, BodyLimit
from bench_service.api.problems import ProblemError
from bench_service.api.submit import cancel_sweep, clean, parse_body, submit_sweep
from bench_service.store import Store, SweepInfo, mask_url
from bench_service.store.service import PAGE_COLUMNS, SORTABLE, downsampled_curve, trial_page
from bench_service.vocab import AXES, JOB_TERMINAL, ROLES, TRIAL_FINISHED, TRIAL_STATUSES

#: Largest page of trials (``limit``) and of sweeps.
MAX_PAGE = 1000
#: Largest page of curve points (``/sweeps/{name}/curves``).
MAX_CURVE_PAGE = 100_000
INT32 = 2**31 - 1

SweepName = Annotated[str, Path(min_length=1, max_length=200, description="sweep name")]
TrialId = Annotated[int, Path(ge=1, le=INT32)]
TextFilter = Annotated[list[str] | None, Query(max_length=100)]


@dataclass
class ServiceConfig:
    """What ``bench serve`` hands the app."""

    store: Store
    runner: JobRunner
    tokens: Tokens
    public_read: bool = False
    max_trials: int = 10_000
    max_body: int = MAX_BODY_BYTES
    embedded: bool = False
    stop_wait: float = 40.0


_bearer = HTTPBearer(auto_error=False, description="a token of the server's tokens file")


def create_app(config: ServiceConfig) -> FastAPI:
    """The app, bound to one store and one Ray cluster."""
    from bench_service.cli import version

    app = FastAPI(title="bench service", version=version(),
                  description="Submit benchmark sweeps as Ray Jobs; query their results.")
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body)
    store, runner, tokens = config.store, config.runner, config.tokens

    def _user(creds: HTTPAuthorizationCredentials | None) -> User:
        if not tokens.configured:
            return User("local", admin=True)
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise ProblemError(401, "unauthorized",
                               "this request needs a bearer token (Authorization: Bearer "
                               "TOKEN; the CLI reads $BENCH_API_TOKEN)",
                               headers={"WWW-Authenticate": "Bearer"})
        user = tokens.user(creds.credentials)
        if user is None:
            raise ProblemError(401, "unauthorized", "the bearer token is not valid here",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return user

    def writer(creds: Annotated[HTTPAuthorizationCredentials | None,
                                Depends(_bearer)]) -> User:
        return _user(creds)

    def reader(creds: Annotated[HTTPAuthorizationCredentials | None,
                                Depends(_bearer)]) -> User | None:
        if config.public_read or not tokens.configured:
            return None
        return _user(creds)

    best_cache: dict[Any, dict[str, Any]] = {}
    Writer = Annotated[User, Depends(writer)]
    Reader = Annotated[User | None, Depends(reader)]
    read_errors = problems.problems(401, 404, 422)

    # ------------------------------------------------------------------ service

    @app.get("/health", response_model=models.Health)
    def health() -> Any:
        try:
            with store.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            db = "ok"
        except Exception as exc:
            db = f"unreachable: {str(exc).splitlines()[0][:200]}"
        return {"status": "ok" if db == "ok" else "degraded", "version": version(),
                "database": f"{mask_url(store.url)} ({db})", "ray": runner.address,
                "ray_embedded": config.embedded}

    @app.get("/registry", response_model=dict[str, list[models.RegistryEntry]],
             responses=problems.problems(401))
    def registry(_: Reader) -> Any:
        return registry_entries()

    # ------------------------------------------------------------------ sweeps

    @app.post(
        "/sweeps", status_code=201, response_model=models.Submitted,
        responses={200: {"model": models.Submitted, "description": "resumed"},
                   **problems.problems(401, 403, 409, 413, 415, 422, 503)},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}}}}},
    )
    async def post_sweep(request: Request, user: Writer) -> Any:
        """Submit a sweep spec (JSON or YAML); it is stored, then started as a Ray Job."""
        body = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        data = parse_body(body, ctype)
        out, status = await run_in_threadpool(submit_sweep, store, runner, data, user,
                                              config.max_trials)
        return JSONResponse(out, status_code=status)

    @app.get("/sweeps", response_model=models.SweepPage, responses=problems.problems(401, 422))
    def list_sweeps(_: Reader, offset: Annotated[int, Query(ge=0, le=INT32)] = 0,
                    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> Any:
        every = store.list_sweeps()
        items = [sweep_out(s) for s in every[offset:offset + limit]]
        return JSONResponse({"total": len(every), "offset": offset, "limit": limit,
                             "items": items})

    @app.get("/sweeps/{name}", response_model=models.SweepOut, responses=read_errors)
    def get_sweep(name: SweepName, _: Reader) -> Any:
        sweep = _sweep(name)
        if sweep.job_id and sweep.job_state not in JOB_TERMINAL:
            runner.refresh(store, sweep.name, sweep.job_id)
            sweep = _sweep(name)
        return JSONResponse(sweep_out(sweep, spec=True))

    @app.post("/sweeps/{name}/cancel", response_model=models.CancelOut,
              responses=problems.problems(401, 403, 404, 409, 422, 503))
    def cancel(name: SweepName, user: Writer) -> Any:
        """Stop the sweep's Ray Job; its unfinished trials become ``cancelled``."""
        return JSONResponse(cancel_sweep(store, runner, _name(name), user, config.stop_wait))

    @app.get("/sweeps/{name}/trials", response_model=models.TrialPage, responses=read_errors)
    def trials(
        name: SweepName, _: Reader,
        workload: TextFilter = None, optimizer: TextFilter = None,
        scheduler: TextFilter = None, regularizer: TextFilter = None,
        status: TextFilter = None, role: TextFilter = None,
        seed: Annotated[list[int] | None, Query(max_length=100)] = None,
        sort: Annotated[str, Query(max_length=40, description="a column; -col descends")] = "id",
        offset: Annotated[int, Query(ge=0, le=INT32)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> Any:
        """One page of the sweep's trials, with ``bench results``' filters."""
        sweep = _sweep(name)
        filters = _filters(sweep, workload=workload, optimizer=optimizer, scheduler=scheduler,
                           regularizer=regularizer, status=status, role=role, seed=seed)
        if sort.removeprefix("-") not in SORTABLE:
            raise ProblemError(422, "invalid-sort", f"sort: cannot sort by {sort[:40]!r}; "
                               f"valid: {', '.join(SORTABLE)}", [("sort", "unknown column")])
        total, rows = trial_page(store, sweep.id, filters, sort=sort, offset=offset,
                                 limit=limit)
        items = [trial_out(r, sweep.name) for r in rows]
        return JSONResponse({"total": total, "offset": offset, "limit": limit, "sort": sort,
                             "items": items})

    @app.get("/sweeps/{name}/curves", response_model=models.Curves, responses=read_errors)
    def curves(
        name: SweepName, _: Reader,
        metric: TextFilter = None,
        scope: Annotated[str | None, Query(pattern="^(step|epoch)$")] = None,
        trial_id: Annotated[list[int] | None, Query(max_length=1000)] = None,
        workload: TextFilter = None, optimizer: TextFilter = None,
        scheduler: TextFilter = None, regularizer: TextFilter = None,
        status: TextFilter = None, role: TextFilter = None,
        seed: Annotated[list[int] | None, Query(max_length=100)] = None,
        offset: Annotated[int, Query(ge=0, le=INT32)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_CURVE_PAGE)] = MAX_CURVE_PAGE,
    ) -> Any:
        """Every metric point (``bench results --curves``), long format, paged."""
        sweep = _sweep(name)
        filters = _filters(sweep, workload=workload, optimizer=optimizer, scheduler=scheduler,
                           regularizer=regularizer, status=status, role=role, seed=seed)
        _ints(trial_id, "trial_id")
        _texts(metric, "metric")
        frame = store.curves_frame(sweep.name, names=metric, scope=scope, trial_ids=trial_id,
                                   **filters)
        page = frame.iloc[offset:offset + limit]
        columns = {c: clean(page[c].tolist()) for c in page.columns}
        return JSONResponse({"total": len(frame), "offset": offset, "limit": limit,
                             "columns": columns})

    @app.get("/sweeps/{name}/best", response_model=models.Table, responses=read_errors)
    def best(
        name: SweepName, _: Reader,
        workload: TextFilter = None, optimizer: TextFilter = None,
        scheduler: TextFilter = None, regularizer: TextFilter = None,
    ) -> Any:
        """The table of ``bench results --best``: per cell its best config, mean ± std and
        95% CI over seeds, and rank."""
        from bench_service.sweep.best import best_table

        sweep = _sweep(name)
        filters = _filters(sweep, workload=workload, optimizer=optimizer, scheduler=scheduler,
                           regularizer=regularizer)
        # The table only changes when a trial changes status (an outcome is stored with its
        # status): cache it by the sweep's spec and status counts.
        key = (sweep.name, sweep.spec_hash, tuple(sorted(sweep.counts.items())),
               tuple(sorted((k, tuple(v)) for k, v in filters.items())))
        body = best_cache.get(key)
        if body is None:
            frame = best_table(store, sweep.name, **filters)
            rows = clean(frame.astype(object).where(frame.notna(), None).values.tolist())
            body = {"columns": [str(c) for c in frame.columns], "rows": rows}
            best_cache[key] = body
            while len(best_cache) > 32:
                best_cache.pop(next(iter(best_cache)))
        return JSONResponse(body)

    @app.get("/sweeps/{name}/logs", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                        **problems.problems(401, 404, 422, 503)})
    async def logs(name: SweepName, _: Reader,
                   tail: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
                   follow: bool = False) -> Response:
        """The sweep's job log (its last ``tail`` lines); ``follow`` streams it until the job
        ends."""
        sweep = await run_in_threadpool(_sweep, name)
        if not sweep.job_id:
            raise ProblemError(404, "no-job", f"sweep {sweep.name!r} was never run as a job "
                               "of this service")
        job_id = sweep.job_id
        try:
            text = await run_in_threadpool(runner.logs, job_id)
        except ClusterError as exc:
            raise ProblemError(503, "cluster-unavailable",
                               f"cannot read the log of job {job_id}: {exc}") from None
        if tail is not None:
            text = "".join(io.StringIO(text).readlines()[-tail:])
        if not follow:
            return PlainTextResponse(text)
        already = len(text)

        async def stream() -> Any:
            yield text
            seen = 0
            async for chunk in runner.follow(job_id):
                # tail_job_logs starts from the beginning: skip what was already sent
                if seen + len(chunk) <= already:
                    seen += len(chunk)
                    continue
                cut = max(0, already - seen)
                seen += len(chunk)
                yield chunk[cut:]

        return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")

    # ------------------------------------------------------------------ trials

    @app.get("/trials/{trial_id}", response_model=models.TrialOut, responses=read_errors)
    def trial(trial_id: TrialId, _: Reader) -> Any:
        from bench_service.store.service import trial_row

        row = trial_row(store, trial_id)
        if row is None:
            raise ProblemError(404, "unknown-trial", f"unknown trial id {trial_id}")
        sweep_name = row.pop("sweep")
        return JSONResponse(trial_out(row, sweep_name))

    @app.get("/trials/{trial_id}/metrics", response_model=models.Metrics, responses=read_errors)
    def metrics(trial_id: TrialId, _: Reader,
                name: TextFilter = None,
                scope: Annotated[str | None, Query(pattern="^(step|epoch)$")] = None,
                max_points: Annotated[int, Query(ge=2, le=100_000)] = 200) -> Any:
        """One trial's curves, each downsampled in the database to at most ``max_points``
        points (evenly spaced, first and last kept)."""
        from bench_service.store.service import trial_row

        _texts(name, "name")
        if trial_row(store, trial_id) is None:
            raise ProblemError(404, "unknown-trial", f"unknown trial id {trial_id}")
        points = downsampled_curve(store, trial_id, names=name or (), scope=scope,
                                   max_points=max_points)
        series: dict[tuple[str, str], dict[str, Any]] = {}
        for p in points:
            s = series.setdefault((p["name"], p["scope"]), {
                "name": p["name"], "scope": p["scope"], "points": p["points"], "step": [],
                "epoch": [], "wall_time": [], "value": []})
            for key in ("step", "epoch", "wall_time", "value"):
                s[key].append(p[key])
        return JSONResponse(clean({"trial_id": trial_id, "max_points": max_points,
                                   "series": list(series.values())}))

    # ------------------------------------------------------------------ helpers

    def _name(name: str) -> str:
        if "\x00" in name:
            raise ProblemError(404, "unknown-sweep", f"unknown sweep {name[:200]!r}")
        return name

    def _sweep(name: str) -> SweepInfo:
        sweep = store.get_sweep(_name(name))
        if sweep is None:
            raise ProblemError(404, "unknown-sweep", f"unknown sweep {name[:200]!r}")
        return sweep

    def _filters(sweep: SweepInfo, **given: Any) -> dict[str, list[Any]]:
        """``bench results``' checks: an axis value no trial has is a 422 naming the values
        the sweep has (a typo, not an empty answer); status and role are closed lists."""
        out: dict[str, list[Any]] = {}
        for key, values in given.items():
            if not values:
                continue
            if key == "seed":
                _ints(values, "seed")
            else:
                _texts(values, key)
            if key in AXES:
                present = store.values_of(sweep.name, key)
                missing = [v for v in values if v not in present]
                if missing:
                    raise ProblemError(
                        422, "invalid-filter",
                        f"{key}: no trial of sweep {sweep.name!r} has {key} "
                        f"{missing[0][:80]!r}; its {key}s: {', '.join(present[:30])}",
                        [(key, f"unknown value {missing[0][:80]!r}")])
            valid = {"status": TRIAL_STATUSES, "role": ROLES}.get(key)
            bad = [v for v in values if valid is not None and v not in valid]
            if bad:
                raise ProblemError(422, "invalid-filter", f"{key}: invalid {key} "
                                   f"{bad[0][:80]!r}; valid: {', '.join(valid or ())}",
                                   [(key, f"invalid value {bad[0][:80]!r}")])
            out[key] = list(values)
        return out

    return app


def _texts(values: list[str] | None, field: str) -> None:
    for v in values or ():
        if "\x00" in v or len(v) > 200:
            raise ProblemError(422, "invalid-filter", f"{field}: values must be at most 200 "
                               "characters without NUL", [(field, "invalid value")])


def _ints(values: list[int] | None, field: str) -> None:
    for v in values or ():
        if not -INT32 - 1 <= v <= INT32:
            raise ProblemError(422, "invalid-filter", f"{field}: {v} is out of range",
                               [(field, "out of range")])


def sweep_out(s: SweepInfo, spec: bool = False) -> dict[str, Any]:
    """One sweep as the API shows it: state, submitter, progress counts, times."""
    return clean({
        "name": s.name, "status": s.status, "state": s.job_state, "submitter": s.submitter,
        "job_id": s.job_id, "job_message": s.job_message, "n_trials": s.n_trials,
        "done": sum(s.counts.get(k, 0) for k in TRIAL_FINISHED), "counts": dict(s.counts),
        "description": s.description, "spec_hash": s.spec_hash,
        "created_at": s.created_at, "started_at": s.started_at, "finished_at": s.finished_at,
        "job_submitted_at": s.job_submitted_at, "job_started_at": s.job_started_at,
        "job_finished_at": s.job_finished_at, **({"spec": s.spec} if spec else {}),
    })


def trial_out(row: dict[str, Any], sweep: str) -> dict[str, Any]:
    out = {c: row.get(c) for c in PAGE_COLUMNS}
    out["sweep"] = sweep
    return dict(clean(out))


def registry_entries() -> dict[str, list[dict[str, Any]]]:
    """What ``bench list`` shows: every registered entry of each axis, its description and
    its parameters' defaults."""
    from bench_service.engine import OPTIMIZERS, REGULARIZERS, SCHEDULERS, WORKLOADS

    out: dict[str, list[dict[str, Any]]] = {}
    for axis, reg in (("optimizers", OPTIMIZERS), ("schedulers", SCHEDULERS),
                      ("regularizers", REGULARIZERS), ("workloads", WORKLOADS)):
        entries = []
        for entry in reg:
            space = entry.space() if hasattr(entry, "space") else entry.hyperparams
            desc = entry.describe() if hasattr(entry, "describe") else entry.description
            entries.append({"name": entry.name, "description": str(desc),
                            "params": clean({p.name: p.default for p in space})})
        out[axis] = entries
    return out


__all__ = ["ServiceConfig", "create_app", "registry_entries", "sweep_out", "trial_out"]
