"""Which value of each request field a turn gets: its own, else its conversation's default, else the
server's (PARLEY_DEFAULT_REQUEST, PARLEY_MODEL, PARLEY_INSTRUCTIONS). Decided once, when the turn is accepted,
so a queued turn runs as it was asked for even if the defaults change meanwhile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WORKER_OWNED = frozenset({"stream", "conversation", "input", "previous_response_id", "background", "store"})
"""Fields of ``responses.create`` the worker alone sets: they are how a turn appends to its conversation
exactly once (README "Exactly-once upstream append"), so no layer of defaults may set them."""


def resolve(turn_fields: Mapping[str, Any], conversation_defaults: Mapping[str, Any],
            server_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Each field from the first layer that sets it (``None`` sets nothing). A field is replaced whole, never
    merged: a turn's ``tools`` replace the conversation's, and its ``text`` replaces the default ``text``."""
    resolved: dict[str, Any] = {}
    for layer in (server_defaults, conversation_defaults, turn_fields):
        resolved.update((name, value) for name, value in layer.items()
                        if value is not None and name not in WORKER_OWNED)
    return resolved


def upstream_body(request: Mapping[str, Any] | None, worker_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ``responses.create`` body: a turn's resolved request under the fields the worker sets."""
    body = {name: value for name, value in (request or {}).items() if name not in WORKER_OWNED}
    body.update(worker_fields)
    return body
