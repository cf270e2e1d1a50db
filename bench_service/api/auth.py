"""Bearer tokens of the service: which user a request is, and whether it is an admin.

Tokens come from a tokens file (``--tokens FILE`` or ``$BENCH_API_TOKENS_FILE``) and/or
``$BENCH_API_TOKENS``; each entry is ``USER=SECRET`` or ``USER:admin=SECRET``, one per line
(file) or separated by ``;`` or newlines (environment); ``#`` starts a comment. ``SECRET``
is either ``sha256:<64 hex digits>`` (the SHA-256 of the token: what a tokens file should
hold) or the token itself. Only hashes are kept in memory; a presented token is hashed and
compared with every entry in constant time (``hmac.compare_digest``), so neither a match's
position nor a partial match shows in the response time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

TOKENS_FILE_ENV = "BENCH_API_TOKENS_FILE"
TOKENS_ENV = "BENCH_API_TOKENS"
_HASHED = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


class TokenConfigError(ValueError):
    """A tokens file or ``$BENCH_API_TOKENS`` entry is malformed."""


@dataclass(frozen=True)
class User:
    """Who a request comes from."""

    name: str
    admin: bool = False


def token_hash(token: str) -> str:
    """``sha256:<hex>`` of a token: what a tokens file holds instead of the token."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


class Tokens:
    """The configured tokens, as (digest, user) pairs."""

    def __init__(self, entries: list[tuple[bytes, User]]) -> None:
        self._entries = entries

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    @classmethod
    def load(cls, path: str | None = None, environ: dict[str, str] | None = None) -> Tokens:
        """Tokens of ``path`` (default ``$BENCH_API_TOKENS_FILE``) plus ``$BENCH_API_TOKENS``.

        Raises:
            TokenConfigError: An entry is malformed (the message names where), or the file
                cannot be read.
        """
        env = dict(os.environ) if environ is None else environ
        entries: list[tuple[bytes, User]] = []
        path = path or env.get(TOKENS_FILE_ENV) or None
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise TokenConfigError(f"cannot read the tokens file {path}: "
                                       f"{exc.strerror or exc}") from None
            entries += _parse(text.splitlines(), f"tokens file {path}")
        raw = env.get(TOKENS_ENV, "")
        if raw.strip():
            entries += _parse(re.split(r"[;\n]", raw), f"${TOKENS_ENV}")
        return cls(entries)

    def user(self, token: str) -> User | None:
        """The user holding ``token``, or ``None``; every entry is compared (constant time)."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        found: User | None = None
        for stored, user in self._entries:
            if hmac.compare_digest(stored, digest) and found is None:
                found = user
        return found


def _parse(lines: list[str], where: str) -> list[tuple[bytes, User]]:
    out: list[tuple[bytes, User]] = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        who, sep, secret = line.partition("=")
        name, _, role = who.strip().partition(":")
        name, role, secret = name.strip(), role.strip(), secret.strip()
        if not sep or not secret:
            raise TokenConfigError(f"{where}, entry {number}: expected USER=TOKEN or "
                                   "USER:admin=sha256:HEX")
        if not _USER.match(name):
            raise TokenConfigError(f"{where}, entry {number}: user name {name[:40]!r} must be "
                                   "1-100 letters, digits or _.@-")
        if role not in ("", "admin"):
            raise TokenConfigError(f"{where}, entry {number}: unknown role {role[:40]!r} "
                                   "(only 'admin')")
        hashed = _HASHED.match(secret)
        digest = bytes.fromhex(hashed.group(1)) if hashed else hashlib.sha256(
            secret.encode("utf-8")).digest()
        out.append((digest, User(name, admin=role == "admin")))
    return out


__all__ = ["TOKENS_ENV", "TOKENS_FILE_ENV", "TokenConfigError", "Tokens", "User", "token_hash"]
