"""What a request that answers several turns sends: their inputs, in arrival order, as one input list."""

from __future__ import annotations

from typing import Any

from ..messages import Turn, TurnInput


def as_messages(value: TurnInput) -> list[dict[str, Any]]:
    """A turn's input as Responses input items: a text is one user message."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value)


def request_input(turn: Turn) -> TurnInput:
    """The ``input`` of the turn's request: its own, or every input of the batch it answers
    (``batch_inputs``, set by the mailbox when the batch started)."""
    inputs = getattr(turn, "batch_inputs", None)
    if not inputs:
        return turn.input
    return [message for value in inputs for message in as_messages(value)]
