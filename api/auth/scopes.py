"""Scopes and the principal a request acts as: pure, no I/O.

``admin`` grants every scope, still within the key's own tenant: no key reaches another tenant's
conversations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from parley.worker.store.keys import DEFAULT_TENANT

CONVERSATIONS_READ = "conversations:read"
"""Read a conversation, its items and its event stream."""
CONVERSATIONS_WRITE = "conversations:write"
"""Create (get-or-create), update and delete conversations."""
TURNS_READ = "turns:read"
"""Read a turn, wait for it, follow its events."""
TURNS_WRITE = "turns:write"
"""Post turns and cancel them."""
ADMIN = "admin"

ALL_SCOPES = frozenset({CONVERSATIONS_READ, CONVERSATIONS_WRITE, TURNS_READ, TURNS_WRITE, ADMIN})


def check_scopes(names: Iterable[str]) -> frozenset[str]:
    scopes = frozenset(name.strip() for name in names if name.strip())
    unknown = sorted(scopes - ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r} (known: {', '.join(sorted(ALL_SCOPES))})")
    if not scopes:
        raise ValueError("a key needs at least one scope")
    return scopes


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the key's name (for the audit log), its tenant and scopes."""

    key: str
    tenant: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes

    def owns(self, tenant: str | None) -> bool:
        """Whether a record of ``tenant`` belongs to this principal (records from before tenants existed
        have none and belong to the default tenant)."""
        return (tenant or DEFAULT_TENANT) == self.tenant
