"""What the tool loop asks of the OpenAI conversation besides generating: its items after the checkpoint
(what was really stored), an earlier round's response to its end, and appending outputs without running the
model (to close calls a failed turn leaves behind)."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import openai

from ..errors import RetryableUpstreamError, translate

POLL_INTERVAL_S = 0.25
POLL_LIMIT_S = 600.0
MAX_ITEMS_PER_CREATE = 20
"""``conversations.items.create`` takes at most 20 items at a time."""


def items_after(client: openai.OpenAI, conv: str, last_item_id: str | None) -> list[dict[str, Any]]:
    """The conversation's items after the checkpoint, oldest first, as JSON."""
    try:
        page = client.conversations.items.list(conv, order="asc", limit=100,
                                               **({"after": last_item_id} if last_item_id else {}))
        return [item.model_dump(mode="json") for item in page]
    except (openai.OpenAIError, httpx2.TransportError) as exc:
        raise translate(exc) from exc


def finished_response(client: openai.OpenAI, response_id: str) -> dict[str, Any] | None:
    """The response once it has ended, as JSON; ``None`` when it does not exist (it never started)."""
    deadline = time.monotonic() + POLL_LIMIT_S
    try:
        while True:
            try:
                response = client.responses.retrieve(response_id)
            except openai.NotFoundError:
                return None
            if response.status not in ("queued", "in_progress"):
                return response.model_dump(mode="json")
            if time.monotonic() > deadline:
                raise RetryableUpstreamError("earlier response still running", reason="still_running")
            time.sleep(POLL_INTERVAL_S)
    except (openai.OpenAIError, httpx2.TransportError) as exc:
        raise translate(exc) from exc


def append_outputs(client: openai.OpenAI, conv: str, outputs: list[dict[str, Any]]) -> None:
    """Store ``function_call_output`` items without running the model: the calls are closed, and the
    conversation's next turn is not refused with ``No tool output found``."""
    try:
        for start in range(0, len(outputs), MAX_ITEMS_PER_CREATE):
            client.conversations.items.create(conv, items=outputs[start:start + MAX_ITEMS_PER_CREATE])  # type: ignore[arg-type]
    except (openai.OpenAIError, httpx2.TransportError) as exc:
        raise translate(exc) from exc
