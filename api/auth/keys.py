"""API keys: named, bound to a tenant and scopes, stored as SHA-256 hashes, rotatable without a restart.

An entry is ``name:tenant:scope+scope:sha256hex`` (scopes joined by ``+``, since scopes hold ``:`` and the
settings list is comma-separated). A plain secret is accepted too, as before tenants existed: it belongs to
the ``default`` tenant with every scope. Entries come from ``PARLEY_API_KEYS`` and, re-read whenever the file
changes, from ``PARLEY_API_KEYS_FILE`` (one per line, ``#`` comments), so a key is added or revoked by
editing a file (a mounted Kubernetes Secret, say) while the API runs.

Only hashes are kept in memory: a request's token is hashed and looked up, so neither the lookup's timing nor
a memory dump tells anything about the other keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from parley.worker.secrets_policy import check_secret_strength
from parley.worker.store.keys import DEFAULT_TENANT

from .scopes import ALL_SCOPES, check_scopes

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Key and tenant names: they appear in logs and Redis keys, so a short safe alphabet."""
HASHED = re.compile(r"^(?P<name>[^:]+):(?P<tenant>[^:]+):(?P<scopes>.*):(?P<digest>[0-9a-f]{64})$")
SECRET_PREFIX = "pk_"
RELOAD_EVERY_S = 1.0


class KeyConfigError(ValueError):
    """A key entry that cannot be used; the message names the entry by position, never by its secret."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    tenant: str
    scopes: frozenset[str]
    digest: str
    """SHA-256 of the bearer secret, hex."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_entry(entry: str, *, position: int, strict: bool = False) -> ApiKey:
    """One configured entry: hashed (``name:tenant:scopes:sha256``) or a plain secret (legacy). ``strict``
    (production): a plain secret must not be a placeholder or short (``worker/secrets_policy.py``)."""
    entry = entry.strip()
    match = HASHED.match(entry)
    if match is None:
        if ":" in entry:  # a mistyped hashed entry must not pass as a plain key with every scope
            raise KeyConfigError(f"API key entry {position} is not name:tenant:scope+scope:sha256 (64 hex "
                                 "digits); plain keys hold no ':'")
        if strict:
            try:
                check_secret_strength(entry, what=f"API key entry {position}")
            except ValueError as exc:
                raise KeyConfigError(str(exc)) from None
        return ApiKey(name=f"key-{position}", tenant=DEFAULT_TENANT, scopes=ALL_SCOPES, digest=digest(entry))
    name, tenant = match["name"], match["tenant"]
    for label, value in (("name", name), ("tenant", tenant)):
        if not NAME.match(value):
            raise KeyConfigError(f"API key entry {position}: {label} {value[:64]!r} must be 1-64 letters, "
                                 "digits, '_', '.' or '-'")
    try:
        scopes = check_scopes(match["scopes"].split("+"))
    except ValueError as exc:
        raise KeyConfigError(f"API key entry {position} ({name}): {exc}") from None
    return ApiKey(name=name, tenant=tenant, scopes=scopes, digest=match["digest"])


def format_entry(key: ApiKey) -> str:
    return f"{key.name}:{key.tenant}:{'+'.join(sorted(key.scopes))}:{key.digest}"


def new_key(name: str, tenant: str, scopes: list[str]) -> tuple[str, ApiKey]:
    """A fresh secret (shown once) and the entry that configures it (only its hash)."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = parse_entry(f"{name}:{tenant}:{'+'.join(scopes)}:{digest(secret)}", position=1)
    return secret, key


def parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def build_index(entries: list[str], *, strict: bool = False) -> dict[str, ApiKey]:
    index: dict[str, ApiKey] = {}
    names: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        key = parse_entry(entry, position=position, strict=strict)
        if key.name in names:
            raise KeyConfigError(f"API key entry {position}: the name {key.name!r} is used twice")
        names.add(key.name)
        index[key.digest] = key
    return index


class KeyRing:
    """The keys in force: those of the settings plus those of the file, which is re-read (at most once a
    second) when its modification time or size changes. A file that turns unreadable or invalid keeps the
    keys last loaded, so a half-written edit does not lock every bot out; the error is reported by
    :meth:`reload`'s caller."""

    def __init__(self, entries: list[str], path: str | None = None, *, strict: bool = False) -> None:
        self.entries = entries
        self.strict = strict
        self.path = Path(path) if path else None
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self.index = build_index(entries + self._file_entries(), strict=strict)
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (without keys the API is open, and only binds to loopback)."""
        return bool(self.index) or self.path is not None

    def _file_entries(self) -> list[str]:
        if self.path is None:
            return []
        stat = os.stat(self.path)
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return parse_lines(self.path.read_text())

    def reload(self, *, now: float | None = None) -> bool:
        """Re-read the file if it changed; ``True`` when the keys changed. Raises on a bad file (the old
        keys stay in force)."""
        now = time.monotonic() if now is None else now
        if self.path is None or now - self._checked < RELOAD_EVERY_S:
            return False
        self._checked = now
        stat = os.stat(self.path)
        if (stat.st_mtime_ns, stat.st_size) == self._stamp:
            return False
        self.index = build_index(self.entries + self._file_entries(), strict=self.strict)
        return True

    def find(self, token: str) -> ApiKey | None:
        found = self.index.get(digest(token))
        # The dict lookup already matched the digest; comparing again in constant time costs nothing and
        # keeps the check independent of how the dict compares strings.
        if found is not None and hmac.compare_digest(found.digest, digest(token)):
            return found
        return None
