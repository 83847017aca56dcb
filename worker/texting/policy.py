"""A conversation's double-texting policy, and which layer sets it.

The three fields are resolved one by one, like the Responses request fields (worker/request/resolve.py): a
turn's own value, else its conversation's default, else the server's settings (``PARLEY_DOUBLE_TEXTING``,
``PARLEY_DEBOUNCE_MS``, ``PARLEY_DEBOUNCE_MAX_MS``). A turn that only asks for a shorter debounce keeps its
conversation's mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

Mode = Literal["enqueue", "merge", "latest", "interrupt", "reject"]
MODES: tuple[str, ...] = get_args(Mode)
FIELDS = ("double_texting", "debounce_ms", "debounce_max_ms")


@dataclass(frozen=True)
class TextingPolicy:
    """``debounce_ms``: a turn starts only after this long without a new message in its conversation;
    ``debounce_max_ms`` caps the wait from the first waiting message, so a chatty user still gets an answer
    (below ``debounce_ms`` it simply wins: the layers are set by different people, and a cap is a cap).
    ``reject`` never waits: a second message is refused, so there is nothing to wait for."""

    mode: Mode = "enqueue"
    debounce_ms: int = 0
    debounce_max_ms: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"double_texting must be one of {', '.join(MODES)} (got {self.mode!r})")
        if self.debounce_ms < 0:
            raise ValueError(f"debounce_ms must be 0 or more (got {self.debounce_ms})")
        if self.debounce_max_ms is not None and self.debounce_max_ms < 0:
            raise ValueError(f"debounce_max_ms must be 0 or more (got {self.debounce_max_ms})")

    @property
    def waits(self) -> bool:
        return self.mode != "reject" and self.debounce_ms > 0


def _layer(values: Mapping[str, Any]) -> dict[str, Any]:
    """The policy fields a layer sets (``None`` sets nothing), under the dataclass's names."""
    names = {"double_texting": "mode", "debounce_ms": "debounce_ms", "debounce_max_ms": "debounce_max_ms"}
    return {names[f]: values[f] for f in FIELDS if values.get(f) is not None}


def resolve(turn: Mapping[str, Any], conversation: Mapping[str, Any], server: TextingPolicy) -> TextingPolicy:
    """The policy a turn runs under: each field from the first of turn, conversation, server that sets it.
    Raises ValueError for a value no layer should hold (the API and the settings refuse those first)."""
    return replace(server, **{**_layer(conversation), **_layer(turn)})
