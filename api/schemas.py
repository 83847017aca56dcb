"""HTTP request and response bodies (design §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from parley.worker.messages import Turn, TurnError, TurnStatus
from parley.worker.request import Messages, RequestDefaults, RequestOptions, ServerTools, message_json
from parley.worker.request.base import encodable
from parley.worker.texting.fields import TextingFields
from parley.worker.webhooks.policy import (
    MAX_URL_CHARS,
    WEBHOOK_EVENT_TYPES,
    check_webhook_events,
    check_webhook_url,
)

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    # OpenAI's limits, checked here so a bad turn is refused at the door instead of failing upstream later.
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(f"at most {MAX_METADATA_PAIRS} keys are allowed")
    for key, val in value.items():
        if not key or len(key) > MAX_METADATA_KEY:
            raise ValueError(f"keys must be 1 to {MAX_METADATA_KEY} characters long")
        if len(val) > MAX_METADATA_VALUE:
            raise ValueError(f"values must be at most {MAX_METADATA_VALUE} characters")
    return value


# The rules are checked by the validators, whose sentences name them (a test pins those); the JSON Schema
# says the same limits, so the document is true and a client's generator (schemathesis) keeps within them.
METADATA_SCHEMA = {
    "type": "object", "maxProperties": MAX_METADATA_PAIRS,
    "propertyNames": {"minLength": 1, "maxLength": MAX_METADATA_KEY},
    "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
    "description": f"At most {MAX_METADATA_PAIRS} pairs; keys 1 to {MAX_METADATA_KEY} characters, values at "
                   f"most {MAX_METADATA_VALUE} (OpenAI's limits)"}
# Whitespace spelled out: ``\s`` means three things in the three regex engines that read these patterns
# (pydantic's Rust one: Unicode White_Space; Python's: also \x1c-\x1f; JSON Schema's ECMA one: not \x85 but
# \ufeff), so a generator would send what the server refuses, or the other way round.
UNICODE_SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""Unicode's White_Space: what ``\\s`` matches in pydantic's patterns."""
PYTHON_SPACE = UNICODE_SPACE + r"\x1c-\x1f"
"""What ``str.isspace`` is true for."""
IDENT_PATTERN = rf"^[^{{}}{UNICODE_SPACE}]+$"
URL_TEXT = rf"[^{PYTHON_SPACE}]"
PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
WEBHOOK_URL_PATTERN = (rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9._~%!$&'()*+,;=:-]*@)?[A-Za-z0-9._~%!$&'()*+,;=-]+"
                       rf"(?::{PORT}?)?(?:[/?#]{URL_TEXT}*)?$")
"""The URLs ``check_webhook_url`` takes, told as a regex: an http(s) scheme, a host, a port in range, no
whitespace. Hosts are told as ASCII (IDNs in punycode), which the check also takes in other spellings."""

Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata), WithJsonSchema(METADATA_SCHEMA)]
Ident = Annotated[str, Field(min_length=1, max_length=256, pattern=IDENT_PATTERN)]
WebhookUrl = Annotated[str, Field(max_length=MAX_URL_CHARS), AfterValidator(check_webhook_url),
                       WithJsonSchema({
                           "type": "string", "maxLength": MAX_URL_CHARS, "pattern": WEBHOOK_URL_PATTERN})]
WebhookEvents = Annotated[list[str], Field(min_length=1, max_length=8), AfterValidator(check_webhook_events),
                          WithJsonSchema({"type": "array", "minItems": 1, "maxItems": 8,
                                          "items": {"type": "string", "enum": list(WEBHOOK_EVENT_TYPES)}})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _unicode_text(cls, value: Any) -> Any:
        # JSON may spell a lone surrogate ("\udfff"); Python takes it, but it cannot be encoded, so it would
        # fail every later step (Redis, upstream, every read of the turn): refuse it at the door.
        if not encodable(value):
            raise ValueError("text must be valid Unicode (it holds a lone surrogate such as \\udfff)")
        return value


class ConversationDefaults(RequestDefaults, TextingFields):
    """A conversation's defaults: the request fields and the double-texting policy its turns get unless they
    set their own."""


class CreateConversation(Strict):
    metadata: Metadata | None = None
    key: Ident | None = None
    """Get-or-create: the same key (e.g. ``slack:T1:C2:1712345.678``) always gives the same conversation."""
    webhook_url: WebhookUrl | None = None
    """Where the conversation's terminal events are POSTed, signed (Standard Webhooks); unset: the server's
    ``PARLEY_WEBHOOK_URL``, if any."""
    webhook_events: WebhookEvents | None = None
    """Which terminal events (``turn.completed``, ``turn.failed``, ``turn.cancelled``, ``turn.merged``,
    ``turn.superseded``, ``turn.interrupted``) the webhook gets (default: all)."""
    defaults: ConversationDefaults | None = None
    """Request fields (``model``, ``instructions``, ``tools``, ``text``, ...) and the double-texting policy
    (``double_texting``, ``debounce_ms``, ``debounce_max_ms``) its turns get unless they set their own."""


class Conversation(BaseModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]
    key: str | None = None
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    """The request fields its turns get unless they set their own (``{}``: none)."""


class UpdateConversation(Strict):
    """The fields of a conversation that can change; each one left out stays as it is."""

    metadata: Metadata | None = None
    """Replaces the metadata as a whole, here and upstream (OpenAI's ``conversations.update``)."""
    webhook_url: WebhookUrl | None = None
    """A new webhook target; ``null`` goes back to the server's ``PARLEY_WEBHOOK_URL``, if any."""
    webhook_events: WebhookEvents | None = None
    """Which terminal events the webhook gets (``null``: all)."""
    defaults: ConversationDefaults | None = None
    """Replaces the defaults as a whole (``{}`` or ``null``: none); turns already queued keep theirs."""


class ConversationDeleted(BaseModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool


class ItemPage(BaseModel):
    """A page of the upstream conversation items (OpenAI's item objects, passed through as they are)."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ConversationWithQueue(Conversation):
    pending: int
    running_turn: str | None


class CreateTurn(Strict, RequestOptions, TextingFields):
    input: Annotated[str, Field(min_length=1)] | Messages
    idempotency_key: Ident | None = None
    model: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    instructions: Annotated[str, Field(max_length=32_000)] | None = None
    metadata: Metadata | None = None
    deadline_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    """Give up retrying after this many seconds from the turn's start (``deadline_exceeded``); at most the
    server's PARLEY_TURN_DEADLINE_S, which a longer value is cut to."""
    server_tools: ServerTools | None = None
    """Which of the worker's server tools this turn offers: ``true`` (the default) all, ``false`` none, or a
    list of names."""

    def input_chars(self) -> int:
        """The characters of the text (parts) of the input: what PARLEY_MAX_INPUT_CHARS caps."""
        if isinstance(self.input, str):
            return len(self.input)
        return sum(message.text_chars() for message in self.input)

    def input_value(self) -> str | list[dict[str, Any]]:
        if isinstance(self.input, str):
            return self.input
        return [message_json(message) for message in self.input]

    def server_tools_value(self) -> list[str] | None:
        """``None`` for all server tools, else the names offered (``[]``: none)."""
        if self.server_tools is None or self.server_tools is True:
            return None
        return [] if self.server_tools is False else list(self.server_tools)


class TurnAccepted(BaseModel):
    id: str
    object: Literal["turn"] = "turn"
    conversation_id: str
    status: TurnStatus
    position: int
    created_at: float


class TurnOut(BaseModel):
    id: str
    object: Literal["turn"] = "turn"
    conversation_id: str
    status: TurnStatus
    output_text: str | None
    response_id: str | None
    usage: dict[str, Any] | None
    error: TurnError | None
    attempts: int
    crashes: int = 0
    created_at: float
    started_at: float | None
    completed_at: float | None
    metadata: dict[str, str]
    worker: str | None = None
    model: str | None = None
    request: dict[str, Any] | None = None
    """The Responses options the turn was accepted with (its own, else its conversation's or the server's
    defaults)."""
    server_tools: list[str] | None = None
    output_parsed: Any = None
    """The reply as JSON, when the turn asked for ``text.format`` json_schema."""
    required_action: dict[str, Any] | None = None
    """While ``requires_action``: the calls whose outputs the bot must post to
    ``/v1/turns/{id}/tool_outputs``."""
    tool_calls: list[dict[str, Any]] | None = None
    response_ids: list[str] | None = None
    answered_by: str | None = None
    """For a merged, superseded or interrupted turn: the turn whose reply answers it."""
    answers: list[str] | None = None
    """The other turns its request answered (merged or interrupted into it), in arrival order."""
    double_texting: str | None = None
    """Its policy, when not ``enqueue``."""

    @classmethod
    def of(cls, turn: Turn) -> TurnOut:
        return cls.model_validate(turn.model_dump(), from_attributes=False)


class ErrorBody(BaseModel):
    type: str
    message: str
    param: str | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ToolOutput(Strict):
    call_id: Annotated[str, Field(min_length=1, max_length=128)]
    output: Annotated[str, Field(max_length=256_000)]
    """What the tool returned, as text (JSON is text too)."""


class ToolOutputs(Strict):
    outputs: Annotated[list[ToolOutput], Field(min_length=1, max_length=128)]
