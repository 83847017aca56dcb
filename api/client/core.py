"""The I/O-free half of the client, shared by the sync and async ones: each API call as a :class:`Call` (the
request to send and how to read its answer), the retry policy, and an SSE reader with an idle deadline."""

from __future__ import annotations

import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

from parley.worker.events.models import TERMINAL_TYPES, Event, parse_event

from ..schemas import (
    Conversation,
    ConversationDeleted,
    ConversationWithQueue,
    ItemPage,
    TurnAccepted,
    TurnOut,
)
from .errors import (
    REQUEST_ID_HEADER,
    ParleyConnectionError,
    ParleyTimeoutError,
    RateLimitError,
    UnavailableError,
    api_error,
)

T = TypeVar("T")
TurnInput = str | list[dict[str, str]]
Order = Literal["asc", "desc"]

LONG_POLL_S = 30.0
"""The long-poll ``wait_for_reply`` sends at a time (short enough for proxies that cut idle requests)."""
MAX_WAIT_S = 60.0
"""The longest ``GET /v1/turns/{id}?wait=`` the server takes."""
DEFAULT_IDLE_TIMEOUT_S = 60.0
"""Four of the server's 15 s pings without an event: the stream is considered stuck."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and the model its answer parses into."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    idempotent: bool = True
    """Safe to send again after a connection broke mid-request (the server may have acted on it)."""
    extra_read_s: float = 0.0
    """Added to the read timeout: a long-poll holds the answer back this long on purpose."""
    request_id: str = field(default_factory=lambda: f"req_{secrets.token_hex(8)}")
    """Sent as ``x-request-id`` and kept across retries, so the server's logs join the attempts."""

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {REQUEST_ID_HEADER: self.request_id, **(extra or {})}


def parse(call: Call[T], response: httpx.Response) -> T:
    """The answer as ``call``'s model, or the typed error of an error answer."""
    if response.status_code >= 400:
        raise api_error(response)
    return call.parse(response.json())


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# --- the calls, one per route ----------------------------------------------------------------------------


def create_conversation(key: str | None, metadata: dict[str, str] | None, webhook_url: str | None = None,
                        webhook_events: list[str] | None = None) -> Call[Conversation]:
    # With a key it is get-or-create, so sending it twice gives the same conversation.
    return Call("POST", "/v1/conversations", Conversation.model_validate,
                json=_present(key=key, metadata=metadata, webhook_url=webhook_url,
                              webhook_events=webhook_events),
                idempotent=key is not None)


def get_conversation(conversation_id: str) -> Call[ConversationWithQueue]:
    return Call("GET", f"/v1/conversations/{conversation_id}", ConversationWithQueue.model_validate)


def update_conversation(conversation_id: str, metadata: dict[str, str] | None, webhook_url: str | None = None,
                        webhook_events: list[str] | None = None, clear_webhook: bool = False
                        ) -> Call[Conversation]:
    body = _present(metadata=metadata, webhook_url=webhook_url, webhook_events=webhook_events)
    if clear_webhook:
        body["webhook_url"] = None  # an explicit null: back to the server's default webhook
    return Call("POST", f"/v1/conversations/{conversation_id}", Conversation.model_validate, json=body)


def delete_conversation(conversation_id: str) -> Call[ConversationDeleted]:
    return Call("DELETE", f"/v1/conversations/{conversation_id}", ConversationDeleted.model_validate)


def list_items(conversation_id: str, after: str | None, limit: int | None, order: Order | None
               ) -> Call[ItemPage]:
    return Call("GET", f"/v1/conversations/{conversation_id}/items", ItemPage.model_validate,
                params=_present(after=after, limit=limit, order=order))


def send_turn(conversation_id: str, input: TurnInput, *, idempotency_key: str | None, model: str | None,
              instructions: str | None, metadata: dict[str, str] | None,
              options: dict[str, Any] | None = None) -> Call[TurnAccepted]:
    # The server dedupes turns by idempotency key per conversation: with one, a retry after a lost answer
    # finds the turn it already accepted instead of queueing it twice. One per call, if the caller has none.
    key = idempotency_key or f"client-{uuid.uuid4().hex}"
    body = {"input": input, **_present(idempotency_key=key, model=model, instructions=instructions,
                                       metadata=metadata), **_present(**(options or {}))}
    return Call("POST", f"/v1/conversations/{conversation_id}/turns", TurnAccepted.model_validate, json=body)


def get_turn(turn_id: str, wait_s: float | None) -> Call[TurnOut]:
    wait = min(wait_s, MAX_WAIT_S) if wait_s else None
    return Call("GET", f"/v1/turns/{turn_id}", TurnOut.model_validate, params=_present(wait=wait),
                extra_read_s=wait or 0.0)


def cancel_turn(turn_id: str) -> Call[TurnOut]:
    # Not idempotent for a broken connection: a second cancel of a turn the first one cancelled is a 409.
    return Call("POST", f"/v1/turns/{turn_id}/cancel", TurnOut.model_validate, idempotent=False)


def submit_tool_outputs(turn_id: str, outputs: dict[str, str]) -> Call[TurnOut]:
    # Idempotent: the same outputs posted again are a 200 that changes nothing, so a lost answer is retried.
    body = {"outputs": [{"call_id": call_id, "output": output} for call_id, output in outputs.items()]}
    return Call("POST", f"/v1/turns/{turn_id}/tool_outputs", TurnOut.model_validate, json=body)


def turn_events_path(turn_id: str) -> str:
    return f"/v1/turns/{turn_id}/events"


def conversation_events_path(conversation_id: str) -> str:
    return f"/v1/conversations/{conversation_id}/events"


# --- retries ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 429 and 503 (honouring ``Retry-After``) and of broken connections where that is safe."""

    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 60.0
    """A longer ``Retry-After`` is cut to this, so one answer cannot park the caller for good."""

    def should_retry(self, exc: BaseException, call: Call[Any] | None) -> bool:
        if isinstance(exc, RateLimitError | UnavailableError):
            return True  # refused before anything was done, or idempotent by key (send_turn)
        if isinstance(exc, ParleyConnectionError):
            return not exc.sent or call is None or call.idempotent
        return False

    def delay_s(self, retry: int, exc: BaseException | None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            return float(min(retry_after, self.retry_after_max_s))
        # Exponential with jitter, so many clients refused together do not come back together.
        exponential = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1))
        return float(exponential * random.uniform(0.5, 1.0))

    def tenacity_kwargs(self, call: Call[Any] | None) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` / ``AsyncRetrying``: the same policy for both clients."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.delay_s(state.attempt_number, exc)

        return {"stop": stop_after_attempt(self.max_retries + 1), "wait": wait, "reraise": True,
                "retry": retry_if_exception(lambda exc: self.should_retry(exc, call))}


# --- Server-Sent Events -----------------------------------------------------------------------------------


class EventReader:
    """Turns SSE lines into parley events, remembers the last event id (for ``Last-Event-ID`` on reconnect)
    and raises :class:`ParleyTimeoutError` once ``idle_timeout_s`` passes without an event: the server's
    keep-alive pings are comment lines, which keep the connection open but are not progress."""

    def __init__(self, *, last_event_id: int | None, idle_timeout_s: float | None, stop_on_terminal: bool
                 ) -> None:
        self.last_event_id = last_event_id
        self.idle_timeout_s = idle_timeout_s
        self.stop_on_terminal = stop_on_terminal
        self.done = False
        self._data: list[str] = []
        self._id: str | None = None
        self._deadline = 0.0
        self.touch()

    def touch(self) -> None:
        self._deadline = time.monotonic() + (self.idle_timeout_s or 0.0)

    def headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["last-event-id"] = str(self.last_event_id)
        return headers

    def check_idle(self) -> None:
        if self.idle_timeout_s is not None and time.monotonic() > self._deadline:
            raise ParleyTimeoutError(f"no event for {self.idle_timeout_s:g} s, only keep-alive pings",
                                     sent=True)

    def read_timeout_s(self) -> float | None:
        # A connection that sends nothing at all, not even pings, ends at the same deadline.
        return self.idle_timeout_s

    def feed(self, line: str) -> Event | None:
        """One line of the stream; the event it completes, if any."""
        self.check_idle()
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        data, self._data = "\n".join(self._data), []
        sse_id, self._id = self._id, None
        if not data:
            return None
        event = parse_event(data)
        self.last_event_id = int(sse_id) if sse_id and sse_id.isdigit() else event.seq
        self.touch()
        self.done = self.stop_on_terminal and event.type in TERMINAL_TYPES
        return event


def next_wait_s(deadline: float) -> float | None:
    """The ``wait`` of the next long-poll of ``wait_for_reply``, or None once ``deadline`` has passed."""
    left = deadline - time.monotonic()
    return min(LONG_POLL_S, left) if left > 0 else None
