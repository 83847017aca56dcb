"""The blocking client: :mod:`.core` builds each request and reads its answer; this sends it with httpx."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

import httpx
from tenacity import Retrying

from parley.worker.events.models import Event
from parley.worker.messages import TurnStatus

from ..schemas import (
    Conversation,
    ConversationDeleted,
    ConversationWithQueue,
    ItemPage,
    TurnAccepted,
    TurnOut,
)
from . import core
from .core import DEFAULT_IDLE_TIMEOUT_S, Call, EventReader, Order, RetryPolicy, TurnInput
from .errors import ParleyConnectionError, ParleyError, api_error, transport_error

T = TypeVar("T")


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


class ParleyClient:
    """parley's HTTP API. Retries 429 and 503 (honouring ``Retry-After``) and broken connections where that is
    safe, up to ``max_retries`` times; event streams raise :class:`~.errors.ParleyTimeoutError` after
    ``idle_timeout_s`` without an event (``None``: wait for ever) and resume with ``Last-Event-ID`` when the
    connection drops."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout_s: float = 30.0, max_retries: int = 3,
                 idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S, retry: RetryPolicy | None = None,
                 http: httpx.Client | None = None) -> None:
        self.http = http or httpx.Client(base_url=base_url, headers=auth_headers(api_key), timeout=timeout_s)
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.retry = retry or RetryPolicy(max_retries=max_retries)

    def __enter__(self) -> ParleyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- conversations ------------------------------------------------------------------------------------

    def create_conversation(self, *, key: str | None = None, metadata: dict[str, str] | None = None,
                            webhook_url: str | None = None, webhook_events: list[str] | None = None
                            ) -> Conversation:
        """A new conversation; with ``key``, the one bound to that key (get-or-create). ``webhook_url``: where
        its terminal events are POSTed, signed (``webhook_events``: which of them)."""
        return self._call(core.create_conversation(key, metadata, webhook_url, webhook_events))

    def get_conversation(self, conversation_id: str) -> ConversationWithQueue:
        return self._call(core.get_conversation(conversation_id))

    def update_conversation(self, conversation_id: str, *, metadata: dict[str, str] | None = None,
                            webhook_url: str | None = None, webhook_events: list[str] | None = None,
                            clear_webhook: bool = False) -> Conversation:
        """Replace the metadata (here and upstream) or the webhook; what is left out stays as it is.
        ``clear_webhook`` goes back to the server's default webhook."""
        return self._call(core.update_conversation(conversation_id, metadata, webhook_url, webhook_events,
                                                     clear_webhook))

    def delete_conversation(self, conversation_id: str) -> ConversationDeleted:
        return self._call(core.delete_conversation(conversation_id))

    def list_items(self, conversation_id: str, *, after: str | None = None, limit: int | None = None,
                   order: Order | None = None) -> ItemPage:
        """One page of the upstream items (server defaults: 20, newest first)."""
        return self._call(core.list_items(conversation_id, after, limit, order))

    def iter_items(self, conversation_id: str, *, order: Order = "asc", page_size: int = 100
                   ) -> Iterator[dict[str, Any]]:
        """Every item of the conversation, page after page (oldest first by default)."""
        after: str | None = None
        while True:
            page = self.list_items(conversation_id, after=after, limit=page_size, order=order)
            yield from page.data
            if not page.has_more or page.last_id is None:
                return
            after = page.last_id

    # --- turns --------------------------------------------------------------------------------------------

    def send_turn(self, conversation_id: str, input: TurnInput, *, idempotency_key: str | None = None,
                  model: str | None = None, instructions: str | None = None,
                  metadata: dict[str, str] | None = None, **options: Any) -> TurnAccepted:
        """Queue a turn. Without ``idempotency_key`` one is made for this call, so a retry cannot queue it
        twice; pass your own (e.g. the chat platform's event id) to dedupe redeliveries across calls too.
        ``options``: the turn's Responses fields (``tools``, ``tool_choice``, ``text``, ``server_tools``,
        ...) and its double-texting policy (``double_texting``, ``debounce_ms``, ``debounce_max_ms``; under
        ``reject`` a busy conversation raises ``ConflictError`` with ``type`` ``conversation_busy``)."""
        return self._call(core.send_turn(conversation_id, input, idempotency_key=idempotency_key, model=model,
                                         instructions=instructions, metadata=metadata, options=options))

    def get_turn(self, turn_id: str, *, wait_s: float | None = None) -> TurnOut:
        """The turn; with ``wait_s`` (at most 60), once it has ended or that time is up (long-poll)."""
        return self._call(core.get_turn(turn_id, wait_s))

    def wait_for_reply(self, turn_id: str, *, timeout_s: float = 120.0) -> TurnOut:
        """The turn once it has ended (completed, failed, cancelled, or merged / superseded / interrupted
        into a turn whose reply answers it) or waits for the bot's tool outputs (``requires_action``: post
        them with :meth:`submit_tool_outputs`), long-polling until ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            wait = core.next_wait_s(deadline)
            turn = self.get_turn(turn_id, wait_s=wait or 0.0)
            if turn.status.terminal or turn.status is TurnStatus.requires_action or wait is None:
                return turn

    def cancel_turn(self, turn_id: str) -> TurnOut:
        """Cancel a queued turn; :class:`~.errors.ConflictError` once it runs."""
        return self._call(core.cancel_turn(turn_id))

    def submit_tool_outputs(self, turn_id: str, outputs: dict[str, str]) -> TurnOut:
        """The outputs (call id -> text) of every call of a turn that ``requires_action``; it then resumes."""
        return self._call(core.submit_tool_outputs(turn_id, outputs))

    # --- events -------------------------------------------------------------------------------------------

    def stream_turn(self, turn_id: str, *, last_event_id: int | None = None) -> Generator[Event, None, None]:
        """The turn's events as they happen, ending with its terminal event."""
        reader = EventReader(last_event_id=last_event_id, idle_timeout_s=self.idle_timeout_s,
                             stop_on_terminal=True)
        yield from self._stream(core.turn_events_path(turn_id), reader)

    def stream_conversation(self, conversation_id: str, *, last_event_id: int | None = None
                            ) -> Generator[Event, None, None]:
        """Every event of the conversation after ``last_event_id``, then live ones; never ends by itself
        (``close()`` it, or use ``contextlib.closing``, to hang up)."""
        reader = EventReader(last_event_id=last_event_id, idle_timeout_s=self.idle_timeout_s,
                             stop_on_terminal=False)
        yield from self._stream(core.conversation_events_path(conversation_id), reader)

    # --- transport ----------------------------------------------------------------------------------------

    def _call(self, call: Call[T]) -> T:
        for attempt in Retrying(**self.retry.tenacity_kwargs(call)):
            with attempt:
                try:
                    response = self.http.request(
                        call.method, call.path, json=call.json, params=call.params, headers=call.headers(),
                        timeout=self._timeout(call.extra_read_s))
                except httpx.TransportError as exc:
                    raise transport_error(exc) from exc
                return core.parse(call, response)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _timeout(self, extra_read_s: float = 0.0) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s, read=self.timeout_s + extra_read_s)

    def _stream(self, path: str, reader: EventReader) -> Generator[Event, None, None]:
        failures = 0
        while True:
            try:
                timeout = httpx.Timeout(self.timeout_s, read=reader.read_timeout_s())
                with self.http.stream("GET", path, headers=reader.headers(), timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise api_error(response)
                    for line in response.iter_lines():
                        if (event := reader.feed(line)) is not None:
                            failures = 0
                            yield event
                            if reader.done:
                                return
                error: ParleyError = ParleyConnectionError("the event stream ended early", sent=True)
            except ParleyError as exc:  # before httpx's: ParleyConnectionError is an httpx.TransportError too
                error = exc
            except httpx.TransportError as exc:
                error = transport_error(exc)
            reader.check_idle()  # a stream gone quiet is not resumed: nothing is coming
            failures += 1
            if failures > self.retry.max_retries or not self.retry.should_retry(error, None):
                raise error
            time.sleep(self.retry.delay_s(failures, error))  # then resume after reader.last_event_id
