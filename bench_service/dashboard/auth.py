"""An access token for a dashboard that listens beyond this machine.

Streamlit has no authentication of its own, so a dashboard bound to ``0.0.0.0`` would show
every result to anyone who can reach the port. ``bench dashboard`` therefore refuses a
non-loopback address without a token and hands the token to the app in
``$BENCH_DASHBOARD_TOKEN`` (never on a command line, where ``ps`` shows it). The app then
asks for it once per browser session: ``?token=...`` in the address (removed from the
address as soon as it is accepted, so that shared links do not carry it) or an
``Authorization: Bearer ...`` header on the page's websocket request (what a reverse proxy or
a script can send). A session that has shown the token keeps a flag in its session state.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import streamlit as st

from bench_service.dashboard_launcher import TOKEN_ENV

_FLAG = "bench.authenticated"


def expected_token() -> str | None:
    """The token this app demands, or ``None`` when it demands none."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (a timing side channel must not reveal the token)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _digest(token: str) -> str:
    # The session remembers which token it showed (a restart with a new token logs it out),
    # not the token itself.
    return hashlib.sha256(token.encode()).hexdigest()


def _bearer() -> str | None:
    try:
        header = st.context.headers.get("Authorization") or ""
    except Exception:  # no request context (AppTest, a bare script run)
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def require_token() -> None:
    """Stop the page with a short message unless this session has shown the right token."""
    expected = expected_token()
    if expected is None:
        return
    ss = st.session_state
    if ss.get(_FLAG) == _digest(expected):
        return
    from_url = st.query_params.get("token")
    if matches(from_url, expected) or matches(_bearer(), expected):
        ss[_FLAG] = _digest(expected)
        if from_url is not None:
            del st.query_params["token"]
        return
    if from_url is not None:
        del st.query_params["token"]  # a wrong token is neither kept nor echoed
    st.error(
        "This dashboard needs its access token: open it as `http://HOST:PORT/?token=...` "
        "with the token `bench dashboard` was started with (`--token` or "
        f"`${TOKEN_ENV}`), or send `Authorization: Bearer ...`."
        + (" The token given was wrong." if from_url is not None else ""),
        icon=":material/lock:",
    )
    st.stop()
