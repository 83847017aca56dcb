"""Wire models: the stored turn (events are in ``worker.events``)."""

from __future__ import annotations

import json
import secrets
from enum import Enum
from typing import Any, ClassVar

from pydantic import BaseModel, Field

TurnInput = str | list[dict[str, Any]]


class TurnStatus(str, Enum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TurnStatus.completed, TurnStatus.failed, TurnStatus.cancelled)


def new_turn_id() -> str:
    return f"turn_{secrets.token_hex(12)}"


class TurnError(BaseModel):
    type: str
    message: str
    code: str | None = None
    status_code: int | None = None


class Turn(BaseModel):
    """A turn as stored in its Redis hash (``worker.keys.Keys.turn``)."""

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
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    worker: str | None = None
    """The worker process (``host:pid``) that finished the turn."""

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("input", "metadata", "usage", "error")

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> Turn:
        data: dict[str, Any] = dict(fields)
        for name in cls.JSON_FIELDS:
            if name in data:
                data[name] = json.loads(data[name])
        return cls.model_validate(data)

    def to_hash(self) -> dict[str, str]:
        raw = self.model_dump(mode="json", exclude_none=True)
        return {k: json.dumps(v) if k in self.JSON_FIELDS else str(v) for k, v in raw.items()}
