"""The events parley publishes (design §5): pydantic models, one per type, and the JSON Schema made from them.

Every event goes to the conversation's pub/sub channel and its capped stream; ``seq`` is assigned in Redis,
inside the script that publishes the event, so it increases strictly per conversation; ``id`` is derived from
the turn and what happened, so consumers dedupe by it. The terminal events (:data:`TERMINAL_TYPES`:
``turn.completed``, ``turn.failed``, ``turn.cancelled``, and the double-texting ends ``turn.merged``,
``turn.superseded``, ``turn.interrupted``) also go to the global replies stream (``worker.events.replies``)
for consumer groups and webhooks.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..messages import Turn, TurnError, TurnStatus

SCHEMA_VERSION = 1


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    conversation_id: str
    turn_id: str
    seq: int = Field(ge=1)
    created_at: float


class TurnQueued(_Event):
    type: Literal["turn.queued"]
    metadata: dict[str, str] | None = None


class TurnStarted(_Event):
    type: Literal["turn.started"]
    attempt: int = Field(ge=1)


class TurnRetrying(_Event):
    type: Literal["turn.retrying"]
    cause: str
    """What went wrong: ``rate_limited``, ``http_5xx``, ``timeout``, ``connection``, ``stream_ended``,
    ``circuit_open`` (most calls to this model are failing; workers wait together)."""
    attempt: int = Field(ge=1)
    retry_at: float
    """When the next attempt starts (Unix time): a bot can show "still working" until then."""
    message: str | None = None


class ResponseDelta(_Event):
    type: Literal["response.delta"]
    delta: str


class TurnCompleted(_Event):
    type: Literal["turn.completed"]
    output_text: str
    output_parsed: Any = None
    """The reply as JSON, when the turn asked for ``text.format`` json_schema (validated against it)."""
    response_id: str | None = None
    usage: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class ToolCalled(_Event):
    type: Literal["tool.called"]
    call_id: str
    name: str
    arguments: str
    runs: Literal["server", "bot"]
    """Where the call runs: a server tool in the worker, or the bot (``turn.requires_action`` follows)."""


class ToolCompleted(_Event):
    type: Literal["tool.completed"]
    call_id: str
    name: str
    duration_ms: float
    error: str | None = None


class TurnRequiresAction(_Event):
    type: Literal["turn.requires_action"]
    required_action: dict[str, Any]
    """``{"tool_calls": [{"call_id", "name", "arguments"}]}``: post every output to
    ``/v1/turns/{id}/tool_outputs``."""
    action_deadline: float
    metadata: dict[str, str] | None = None


class TurnFailed(_Event):
    type: Literal["turn.failed"]
    error: TurnError
    metadata: dict[str, str] | None = None


class TurnCancelled(_Event):
    type: Literal["turn.cancelled"]
    metadata: dict[str, str] | None = None
    reason: Literal["cancelled", "conversation_deleted"] | None = None
    """Why: cancelled by a client (``POST /v1/turns/{id}/cancel``), or its conversation was deleted."""


class TurnMerged(_Event):
    """The turn ended without a reply of its own: its input was sent in the same request as a later turn's
    (policy merge), whose reply answers both. Wait for ``answered_by``'s terminal event."""

    type: Literal["turn.merged"]
    into: str
    """The turn whose request carried this one's input (the same id as ``answered_by``)."""
    answered_by: str
    """The turn whose reply answers this one (it can chain: that turn may itself end interrupted)."""
    metadata: dict[str, str] | None = None


class TurnSuperseded(_Event):
    """The turn never ran: a newer message replaced it while it waited (policy latest), and only the newest
    waiting turn, ``answered_by``, is answered."""

    type: Literal["turn.superseded"]
    answered_by: str
    """The newer turn that replaced it."""
    metadata: dict[str, str] | None = None


class TurnInterrupted(_Event):
    """The turn was stopped while it ran, because a newer message arrived (policy interrupt); its input is
    sent again with the newer one's, and ``answered_by``'s reply answers both."""

    type: Literal["turn.interrupted"]
    answered_by: str
    """The turn whose reply answers this one (it can chain: that turn may itself end interrupted)."""
    metadata: dict[str, str] | None = None


Event = Annotated[TurnQueued | TurnStarted | TurnRetrying | ResponseDelta | ToolCalled | ToolCompleted
                  | TurnRequiresAction | TurnCompleted | TurnFailed | TurnCancelled | TurnMerged
                  | TurnSuperseded | TurnInterrupted,
                  Field(discriminator="type")]
EventType = Literal["turn.queued", "turn.started", "turn.retrying", "response.delta", "tool.called",
                    "tool.completed", "turn.requires_action", "turn.completed", "turn.failed",
                    "turn.cancelled", "turn.merged", "turn.superseded", "turn.interrupted"]
TERMINAL_TYPES = frozenset({"turn.completed", "turn.failed", "turn.cancelled", "turn.merged",
                            "turn.superseded", "turn.interrupted"})
"""The events a turn ends with, exactly one per turn."""
TerminalEvent = TurnCompleted | TurnFailed | TurnCancelled | TurnMerged | TurnSuperseded | TurnInterrupted
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: str | bytes) -> Event:
    return EVENT_ADAPTER.validate_json(raw)


def json_schema() -> dict[str, Any]:
    schema = EVENT_ADAPTER.json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "parley-events.schema.json",
            "title": "parley event", "version": SCHEMA_VERSION, **schema}


def event_json(type_: EventType, *, conversation_id: str, turn_id: str, event_id: str,
               **fields: Any) -> str:
    """The event as JSON *without* ``seq`` (the Lua side appends it); must end with ``}``."""
    body = {"id": event_id, "type": type_, "conversation_id": conversation_id, "turn_id": turn_id,
            "created_at": round(time.time(), 6)}
    body.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(body, separators=(",", ":"))


def terminal_event_of(turn: Turn, *, seq: int) -> TerminalEvent:
    """The terminal event of an ended ``turn``, rebuilt from its record, for when the real one was trimmed
    from the capped stream. Same ``id`` as the real one, so a consumer that saw both handles it once; ``seq``
    is the caller's stream position (the real seq is gone with the entry, and a read allocates none)."""
    common: dict[str, Any] = {
        "id": f"{turn.id}.{turn.status.value}", "conversation_id": turn.conversation_id, "turn_id": turn.id,
        "seq": max(seq, 1), "created_at": turn.completed_at or time.time(), "metadata": turn.metadata or None}
    if turn.status is TurnStatus.completed:
        return TurnCompleted(type="turn.completed", output_text=turn.output_text or "",
                             output_parsed=turn.output_parsed, response_id=turn.response_id, usage=turn.usage,
                             **common)
    if turn.status is TurnStatus.failed:
        error = turn.error or TurnError(type="unknown", message="The turn failed; no error was recorded.")
        return TurnFailed(type="turn.failed", error=error, **common)
    if turn.status is TurnStatus.cancelled:
        return TurnCancelled(type="turn.cancelled", **common)
    if turn.status in (TurnStatus.merged, TurnStatus.superseded, TurnStatus.interrupted):
        if turn.answered_by is None:
            raise ValueError(f"turn {turn.id} is {turn.status.value} but names no answered_by")
        by = turn.answered_by
        if turn.status is TurnStatus.merged:
            return TurnMerged(type="turn.merged", into=by, answered_by=by, **common)
        if turn.status is TurnStatus.superseded:
            return TurnSuperseded(type="turn.superseded", answered_by=by, **common)
        return TurnInterrupted(type="turn.interrupted", answered_by=by, **common)
    raise ValueError(f"turn {turn.id} is {turn.status.value}, not ended")


if __name__ == "__main__":  # python -m parley.worker.events > docs/events.schema.json
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
