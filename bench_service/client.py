"""A Python client of the service (``bench serve``).

    >>> from bench_service.client import Client
    >>> api = Client("http://127.0.0.1:8000", token="...")     # token: $BENCH_API_TOKEN
    >>> sub = api.submit("examples/quickstart.yaml")           # returns at once
    >>> api.wait(sub["name"])                                  # progress bar until it ends
    >>> trials = api.trials(sub["name"], optimizer="adam")     # == load_trials(...)
    >>> curves = api.curves(sub["name"], names=["val_loss"])   # == load_curves(...)
    >>> best = api.best(sub["name"])                           # bench results --best

``trials`` and ``curves`` return the same pandas DataFrames (columns and dtypes) as
``bench_service.load_trials`` / ``load_curves`` on the server's database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

TOKEN_ENV = "BENCH_API_TOKEN"
URL_ENV = "BENCH_API_URL"
DEFAULT_URL = "http://127.0.0.1:8000"
#: Job states after which ``wait`` returns.
_ENDED = ("succeeded", "failed", "cancelled")
_SPECIAL = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


class ApiError(Exception):
    """The service answered with an error (its problem details in ``problem``)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(str(self.problem.get("detail") or f"HTTP {status}"))


class Client:
    """Talks to one service.

    Args:
        url: The service, e.g. ``http://127.0.0.1:8000`` (default ``$BENCH_API_URL``).
        token: A bearer token of the server's tokens file (default ``$BENCH_API_TOKEN``).
        timeout: Seconds per request.
    """

    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 120.0) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **params: Any) -> Any:
        return self._check(self._request("GET", path, params=_params(params))).json()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"cannot reach the service at {self.url}: {exc}") from None

    @staticmethod
    def _check(resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            try:
                problem = resp.json()
            except ValueError:
                problem = {"detail": resp.text[:500]}
            raise ApiError(resp.status_code, problem if isinstance(problem, dict) else {})
        return resp

    # ------------------------------------------------------------------ service

    def health(self) -> dict[str, Any]:
        return dict(self._get("/health"))

    def registry(self) -> dict[str, Any]:
        return dict(self._get("/registry"))

    # ------------------------------------------------------------------ sweeps

    def submit(self, spec: str | Path | Mapping[str, Any]) -> dict[str, Any]:
        """Submit a spec: a mapping (sent as JSON), a YAML file's path, or YAML text.
        Returns ``name``, ``job_id``, ``state``, ``resumed``, ``n_trials`` at once."""
        if isinstance(spec, Mapping):
            resp = self._request("POST", "/sweeps", json=dict(spec))
        else:
            text = spec
            if isinstance(spec, Path) or ("\n" not in spec and Path(spec).is_file()):
                text = Path(spec).read_text(encoding="utf-8")
            resp = self._request("POST", "/sweeps", content=str(text).encode("utf-8"),
                                 headers={"Content-Type": "application/yaml"})
        return dict(self._check(resp).json())

    def sweep(self, name: str) -> dict[str, Any]:
        """The sweep's state, submitter, job, progress counts and spec."""
        return dict(self._get(f"/sweeps/{_quote(name)}"))

    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep (all pages)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._get("/sweeps", offset=len(items), limit=1000)
            items += page["items"]
            if len(items) >= page["total"] or not page["items"]:
                return items

    def cancel(self, name: str) -> dict[str, Any]:
        return dict(self._check(self._request("POST", f"/sweeps/{_quote(name)}/cancel")).json())

    def logs(self, name: str, tail: int | None = None) -> str:
        resp = self._request("GET", f"/sweeps/{_quote(name)}/logs",
                             params=_params({"tail": tail}))
        return self._check(resp).text

    def follow_logs(self, name: str, tail: int | None = None) -> Iterator[str]:
        """The job's log as it is written, until the job ends."""
        params = _params({"tail": tail, "follow": "true"})
        try:
            with self._http.stream("GET", f"/sweeps/{_quote(name)}/logs", params=params,
                                   timeout=None) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._check(resp)
                yield from resp.iter_text()
        except httpx.HTTPError as exc:
            raise ConnectionError(f"cannot reach the service at {self.url}: {exc}") from None

    def wait(self, name: str, *, timeout: float | None = None, progress: bool = True,
             poll: float = 1.0) -> dict[str, Any]:
        """Block until the sweep's job has ended (a tqdm bar of finished trials); its last
        state. Raises ``TimeoutError`` after ``timeout`` seconds."""
        from tqdm import tqdm

        deadline = None if timeout is None else time.monotonic() + timeout
        sweep = self.sweep(name)
        bar = tqdm(total=sweep["n_trials"], desc=name, unit="trial", disable=not progress)
        try:
            while True:
                bar.total = sweep["n_trials"]
                bar.n = sweep["done"]
                bar.set_postfix_str(str(sweep["state"]))
                if sweep["state"] in _ENDED or sweep["state"] is None:
                    return sweep
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"sweep {name!r} still {sweep['state']} after "
                                       f"{timeout:g} s")
                time.sleep(poll)
                sweep = self.sweep(name)
        finally:
            bar.close()

    # ------------------------------------------------------------------ results

    def trials(self, sweep: str, **filters: Any) -> Any:
        """One row per trial: the same DataFrame as ``load_trials(sweep, **filters)``."""
        import pandas as pd

        from bench_service.store import TRIALS_FRAME_COLUMNS
        from bench_service.store._frames import typed_trials

        rows: list[dict[str, Any]] = []
        while True:
            page = self._get(f"/sweeps/{_quote(sweep)}/trials", offset=len(rows),
                             limit=1000, sort="id", **filters)
            rows += page["items"]
            if len(rows) >= page["total"] or not page["items"]:
                break
        for r in rows:
            r["trial_id"] = r.pop("id")
            for key in ("final", "best"):
                if isinstance(r.get(key), dict):
                    r[key] = {k: _SPECIAL.get(v, v) if isinstance(v, str) else v
                              for k, v in r[key].items()}
        data = {c: pd.Series([r.get(c) for r in rows], dtype=object)
                for c in TRIALS_FRAME_COLUMNS}
        return typed_trials(pd.DataFrame(data))

    def curves(self, sweep: str, *, names: list[str] | None = None, scope: str | None = None,
               trial_ids: list[int] | None = None, **filters: Any) -> Any:
        """Metric points in long format: the same DataFrame as ``load_curves(...)``."""
        import pandas as pd

        from bench_service.store import CURVES_FRAME_COLUMNS
        from bench_service.store._frames import typed_curves

        columns: dict[str, list[Any]] = {c: [] for c in CURVES_FRAME_COLUMNS}
        offset = 0
        while True:
            page = self._get(f"/sweeps/{_quote(sweep)}/curves", metric=names, scope=scope,
                             trial_id=trial_ids, offset=offset, limit=100_000, **filters)
            n = len(page["columns"].get("trial_id", []))
            for c in CURVES_FRAME_COLUMNS:
                columns[c] += page["columns"].get(c, [])
            offset += n
            if offset >= page["total"] or n == 0:
                break
        values = columns["value"]
        special = [v if isinstance(v, str) else None for v in values]
        columns["value"] = [None if isinstance(v, str) else v for v in values]
        frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()})
        frame["special"] = pd.Series(special, dtype=object)
        return typed_curves(frame)

    def best(self, sweep: str, **filters: Any) -> Any:
        """The table of ``bench results --best`` as a DataFrame."""
        import pandas as pd

        table = self._get(f"/sweeps/{_quote(sweep)}/best", **filters)
        return pd.DataFrame(table["rows"], columns=table["columns"])

    def trial(self, trial_id: int) -> dict[str, Any]:
        return dict(self._get(f"/trials/{int(trial_id)}"))

    def metrics(self, trial_id: int, name: str | list[str] | None = None,
                max_points: int = 200) -> dict[str, Any]:
        """One trial's curves, downsampled by the server to ``max_points`` per series."""
        return dict(self._get(f"/trials/{int(trial_id)}/metrics", name=name,
                              max_points=max_points))


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _params(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Query parameters without ``None``s, lists repeated (``optimizer=a&optimizer=b``)."""
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            out.append((key, v))
    return out


__all__ = ["ApiError", "Client"]
