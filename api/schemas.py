"""HTTP request and response bodies (design §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from parley.worker.messages import Turn, TurnError, TurnStatus
from parley.worker.webhooks.policy import MAX_URL_CHARS, check_webhook_events, check_webhook_url

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


Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata)]
Ident = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^{}\s]+$")]
WebhookUrl = Annotated[str, Field(max_length=MAX_URL_CHARS), AfterValidator(check_webhook_url)]
WebhookEvents = Annotated[list[str], Field(min_length=1, max_length=8), AfterValidator(check_webhook_events)]


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_encodable(v) for v in value)
    if isinstance(value, BaseModel):
        return all(_encodable(v) for v in value.__dict__.values())
    return True


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _unicode_text(cls, value: Any) -> Any:
        # JSON may spell a lone surrogate ("\udfff"); Python takes it, but it cannot be encoded, so it would
        # fail every later step (Redis, upstream, every read of the turn): refuse it at the door.
        if not _encodable(value):
            raise ValueError("text must be valid Unicode (it holds a lone surrogate such as \\udfff)")
        return value


class CreateConversation(Strict):
    metadata: Metadata | None = None
    key: Ident | None = None
    """Get-or-create: the same key (e.g. ``slack:T1:C2:1712345.678``) always gives the same conversation."""
    webhook_url: WebhookUrl | None = None
    """Where the conversation's terminal events are POSTed, signed (Standard Webhooks); unset: the server's
    ``PARLEY_WEBHOOK_URL``, if any."""
    webhook_events: WebhookEvents | None = None
    """Which of ``turn.completed``, ``turn.failed``, ``turn.cancelled`` the webhook gets (default: all
    three)."""


class Conversation(BaseModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]
    key: str | None = None
    webhook_url: str | None = None
    webhook_events: list[str] | None = None


class UpdateConversation(Strict):
    """The fields of a conversation that can change; each one left out stays as it is."""

    metadata: Metadata | None = None
    """Replaces the metadata as a whole, here and upstream (OpenAI's ``conversations.update``)."""
    webhook_url: WebhookUrl | None = None
    """A new webhook target; ``null`` goes back to the server's ``PARLEY_WEBHOOK_URL``, if any."""
    webhook_events: WebhookEvents | None = None
    """Which terminal events the webhook gets (``null``: all three)."""


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


class InputMessage(Strict):
    role: Literal["user", "assistant", "system", "developer"]
    content: Annotated[str, Field(min_length=1)]
    type: Literal["message"] | None = None


class CreateTurn(Strict):
    input: (Annotated[str, Field(min_length=1)]
            | Annotated[list[InputMessage], Field(min_length=1, max_length=20)])
    idempotency_key: Ident | None = None
    model: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    instructions: Annotated[str, Field(max_length=32_000)] | None = None
    metadata: Metadata | None = None
    deadline_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    """Give up retrying after this many seconds from the turn's start (``deadline_exceeded``); at most the
    server's PARLEY_TURN_DEADLINE_S, which a longer value is cut to."""

    def input_chars(self) -> int:
        if isinstance(self.input, str):
            return len(self.input)
        return sum(len(message.content) for message in self.input)

    def input_value(self) -> str | list[dict[str, Any]]:
        if isinstance(self.input, str):
            return self.input
        return [message.model_dump(exclude_none=True) for message in self.input]


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
    output_parsed: Any = None
    """The reply as JSON, when the turn asked for ``text.format`` json_schema."""
    required_action: dict[str, Any] | None = None
    """While ``requires_action``: the calls whose outputs the bot must post to
    ``/v1/turns/{id}/tool_outputs``."""
    tool_calls: list[dict[str, Any]] | None = None
    response_ids: list[str] | None = None

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
