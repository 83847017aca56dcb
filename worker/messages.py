"""Wire models: the stored turn (events are in ``worker.events``)."""

from __future__ import annotations

import json
import re
import secrets
from enum import Enum
from typing import Any, ClassVar

from pydantic import BaseModel, Field

TurnInput = str | list[dict[str, Any]]


class TurnStatus(str, Enum):  # noqa: UP042 - StrEnum would change str() and format() output
    queued = "queued"
    running = "running"
    requires_action = "requires_action"
    """Waiting for the bot's outputs of its tool calls (``POST /v1/turns/{id}/tool_outputs``)."""
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    merged = "merged"
    """Answered together with a later turn, by that turn's reply (``answered_by``; policy merge)."""
    superseded = "superseded"
    """Never ran: a newer turn replaced it while it waited (``answered_by``; policy latest)."""
    interrupted = "interrupted"
    """Stopped while running; a newer turn's reply answers its input too (``answered_by``; interrupt)."""

    @property
    def terminal(self) -> bool:
        return self in (TurnStatus.completed, TurnStatus.failed, TurnStatus.cancelled, TurnStatus.merged,
                        TurnStatus.superseded, TurnStatus.interrupted)


TURN_PREFIX = "turn_"
_NONCE_HEX = 16

# The id grammar, defined here once: the API checks every path id against it before any Redis access, and a
# conversation id from upstream that breaks it is refused at creation. Upstream mints conversation ids
# (``conv_`` + 48 hex at OpenAI); a wider charset is allowed, but never ``{``/``}`` (they would move a key out
# of its conversation's hash slot) nor ``:``, ``/`` or spaces.
MAX_CONVERSATION_ID_CHARS = 96
_CONVERSATION_BODY = rf"conv_[A-Za-z0-9_-]{{1,{MAX_CONVERSATION_ID_CHARS - 5}}}"
_TURN_BODY = rf"{TURN_PREFIX}([0-9a-f]{{{_NONCE_HEX}}})_({_CONVERSATION_BODY})"
CONVERSATION_ID_PATTERN = f"^{_CONVERSATION_BODY}$"
"""The grammars as JSON Schema patterns, for the OpenAPI document (Python matches them whole: ``fullmatch``,
since ``$`` would let a trailing newline through)."""
TURN_ID_PATTERN = f"^{_TURN_BODY.replace('(', '').replace(')', '')}$"
MAX_TURN_ID_CHARS = len(TURN_PREFIX) + _NONCE_HEX + 1 + MAX_CONVERSATION_ID_CHARS
_CONVERSATION_ID = re.compile(_CONVERSATION_BODY)
_TURN_ID = re.compile(_TURN_BODY)


def is_conversation_id(value: str) -> bool:
    return len(value) <= MAX_CONVERSATION_ID_CHARS and _CONVERSATION_ID.fullmatch(value) is not None


def turn_id_parts(conversation_id: str) -> tuple[str, str]:
    """A turn id is ``head + nonce + tail``: what a Lua script needs to rebuild ids from their nonces."""
    return TURN_PREFIX, f"_{conversation_id}"


def new_turn_id(conversation_id: str) -> str:
    """``turn_<16 hex>_<conversation id>``: the id names its conversation, so finding a turn needs no index
    key (one key less per turn in Redis, and no cross-slot write)."""
    head, tail = turn_id_parts(conversation_id)
    return f"{head}{secrets.token_hex(_NONCE_HEX // 2)}{tail}"


def _turn_match(turn_id: str) -> re.Match[str] | None:
    return _TURN_ID.fullmatch(turn_id) if len(turn_id) <= MAX_TURN_ID_CHARS else None


def conversation_of(turn_id: str) -> str | None:
    """The conversation id inside a turn id, or ``None`` for an id that breaks the grammar."""
    match = _turn_match(turn_id)
    return match.group(2) if match else None


def turn_nonce(turn_id: str) -> str:
    """The random part of a well-formed turn id (what the conversation's turn index holds)."""
    match = _turn_match(turn_id)
    if match is None:
        raise ValueError("not a turn id")
    return match.group(1)


class TurnError(BaseModel):
    type: str
    message: str
    code: str | None = None
    status_code: int | None = None


class Turn(BaseModel):
    """A turn as stored in its Redis hash (``worker.store.keys.Keys.turn``)."""

    id: str
    conversation_id: str
    status: TurnStatus
    input: TurnInput
    model: str | None = None
    instructions: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None
    output_text: str | None = None
    response_id: str | None = None
    usage: dict[str, Any] | None = None
    error: TurnError | None = None
    attempts: int = 0
    crashes: int = 0
    """Times a worker died (or lost its lease) while running this turn; past PARLEY_MAX_CRASHES it is
    dead-lettered."""
    deadline_s: float | None = None
    """The turn's own retry budget, if it asked for less than the server's."""
    tool_calls: list[dict[str, Any]] | None = None
    """Every function call of the turn's rounds (``worker.tools.loop.Call.record``), in order."""
    response_ids: list[str] | None = None
    """The upstream response of each round, in order (round 0 answered the input)."""
    required_action: dict[str, Any] | None = None
    """While ``requires_action``: ``{"tool_calls": [{"call_id", "name", "arguments"}]}``."""
    action_deadline: float | None = None
    output_parsed: Any = None
    """The reply parsed as JSON, when the turn asked for ``text.format`` json_schema."""
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    worker: str | None = None
    """The worker process (``host:pid``) that finished the turn."""
    request: dict[str, Any] | None = None
    """The Responses options (tools, text, reasoning, ...) resolved when the turn was accepted: its own, else
    its conversation's defaults, else the server's (``worker.request.resolve``); absent when none apply."""
    server_tools: list[str] | None = None
    """Which of the worker's server tools the turn offers: ``None`` all of them, ``[]`` none."""
    answered_by: str | None = None
    """For a merged, superseded or interrupted turn: the turn whose reply answers it (it can chain: that turn
    may itself end interrupted)."""
    answers: list[str] | None = None
    """The other turns this turn's request answered (merged or interrupted into it), in arrival order."""
    double_texting: str | None = None
    """The turn's resolved double-texting policy (``worker.texting``); absent: enqueue without debounce."""
    debounce_ms: int | None = None
    """How long its policy waits for more messages before the turn may start."""
    debounce_max_ms: int | None = None
    """The cap on that wait, counted from the first waiting message."""
    batch_inputs: list[TurnInput] | None = None
    """The inputs its request sends, in arrival order, when it answers several turns (set by the mailbox when
    the batch starts)."""
    interrupt_by: str | None = None
    """Set while a newer turn asks this running turn to stop (policy interrupt)."""
    interrupted: bool | None = None
    """Back at the head of its queue after an interrupt: its input is sent with the next turns'."""

    JSON_FIELDS: ClassVar[tuple[str, ...]] = (
        "input", "metadata", "usage", "error", "request", "server_tools", "tool_calls", "response_ids",
        "required_action", "output_parsed", "answers", "batch_inputs")

    @classmethod
    def from_hash(cls, fields: dict[str, str], conversation_id: str, turn_id: str) -> Turn:
        # Id and conversation are implied by the key, and a fresh turn has no attempts field yet.
        data: dict[str, Any] = {**fields, "id": turn_id, "conversation_id": conversation_id}
        for name in cls.JSON_FIELDS:
            if name in data:
                data[name] = json.loads(data[name])
        return cls.model_validate(data)

    @classmethod
    def parse(cls, fields: dict[str, str], conversation_id: str, turn_id: str) -> tuple[Turn, str | None]:
        """The turn of a record, and ``None``; or, for a record that does not parse (a bug, a hand edit, an
        old layout), what could be read of it and a sentence saying which field is bad. The worker fails
        such a turn at once instead of crashing on it at every attempt, and the API still serves it."""
        try:
            return cls.from_hash(fields, conversation_id, turn_id), None
        except (ValueError, TypeError) as exc:  # json and pydantic errors are ValueErrors
            problem = _first_problem(exc)
        data: dict[str, Any] = {"id": turn_id, "conversation_id": conversation_id, "status": "failed",
                                "input": "", "created_at": 0.0}
        for name, raw in fields.items():
            try:
                value = json.loads(raw) if name in cls.JSON_FIELDS else raw
                cls.model_validate({**data, name: value})
            except (ValueError, TypeError):
                continue  # the bad field keeps its default; the others are served as stored
            data[name] = value
        return cls.model_validate(data), f"the stored turn does not parse: {problem}"

    def to_hash(self) -> dict[str, str]:
        # Leave out what is empty or implied: a queued turn is most of Redis's memory (issue 6 budget).
        raw = self.model_dump(mode="json", exclude_none=True, exclude={"id", "conversation_id"})
        for empty in ("metadata", "request"):
            if not raw.get(empty):
                raw.pop(empty, None)
        for counter in ("attempts", "crashes"):
            if not raw.get(counter):
                raw.pop(counter, None)
        return {k: json.dumps(v) if k in self.JSON_FIELDS else str(v) for k, v in raw.items()}


def _first_problem(exc: Exception) -> str:
    """One short sentence about what is wrong, without the stored values (they may hold users' text)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return type(exc).__name__
