"""The double-texting fields as a turn and a conversation's defaults carry them (validated at the door)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from ..request.base import RequestModel, integral
from .policy import FIELDS, Mode

MAX_DEBOUNCE_MS = 600_000
"""Ten minutes: a longer wait is no chat any more, and a Celery countdown that long outlives deploys."""

DebounceMs = Annotated[int, Field(ge=0, le=MAX_DEBOUNCE_MS), BeforeValidator(integral)]


class TextingFields(RequestModel):
    """``double_texting``: what a message does while its conversation is busy (``enqueue``, ``merge``,
    ``latest``, ``interrupt``, ``reject``); ``debounce_ms``: start only after this long without a new message,
    capped at ``debounce_max_ms`` from the first waiting one. Each left out comes from the next layer."""

    double_texting: Mode | None = None
    debounce_ms: DebounceMs | None = None
    debounce_max_ms: DebounceMs | None = None

    def texting(self) -> dict[str, Any]:
        """The fields given (none ``null``)."""
        return {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not None}
