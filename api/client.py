"""A typed Python client of parley's HTTP API, sync and async (httpx; SSE through httpx-sse).

    with ParleyClient("http://127.0.0.1:8000", api_key="...") as parley:
        conv = parley.create_conversation(key="slack:T1:C2:1712345.678")
        turn = parley.send_turn(conv.id, "hello", idempotency_key="Ev123")
        for event in parley.stream_turn(turn.id):
            ...                                   # turn.started, response.delta..., turn.completed
        print(parley.wait_for_reply(turn.id).output_text)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from httpx_sse import aconnect_sse, connect_sse

from parley.worker.events import TERMINAL_TYPES, Event, parse_event

from .schemas import Conversation, ConversationWithQueue, TurnAccepted, TurnOut

LONG_POLL_S = 30.0


class ParleyAPIError(Exception):
    """An error answer of the API, from its ``{"error": {...}}`` envelope."""

    def __init__(self, status_code: int, type_: str, message: str, param: str | None = None) -> None:
        super().__init__(f"{status_code} {type_}: {message}")
        self.status_code = status_code
        self.type = type_
        self.message = message
        self.param = param


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"type": "http_error", "message": response.text[:200]}
        raise ParleyAPIError(response.status_code, error.get("type", "error"), error.get("message", ""),
                             error.get("param"))
    body: dict[str, Any] = response.json()
    return body


def _turn_body(input: str | list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    return {"input": input, **{k: v for k, v in fields.items() if v is not None}}


def _headers(api_key: str | None, last_event_id: int | None = None) -> dict[str, str]:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    if last_event_id is not None:
        headers["last-event-id"] = str(last_event_id)
    return headers


class ParleyClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout_s: float = 30.0, http: httpx.Client | None = None) -> None:
        self.http = http or httpx.Client(base_url=base_url, headers=_headers(api_key),
                                         timeout=httpx.Timeout(timeout_s, read=LONG_POLL_S + timeout_s))

    def __enter__(self) -> ParleyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def create_conversation(self, *, key: str | None = None, metadata: dict[str, str] | None = None
                            ) -> Conversation:
        body = {k: v for k, v in {"key": key, "metadata": metadata}.items() if v is not None}
        return Conversation.model_validate(_check(self.http.post("/v1/conversations", json=body)))

    def get_conversation(self, conversation_id: str) -> ConversationWithQueue:
        return ConversationWithQueue.model_validate(_check(self.http.get(f"/v1/conversations/{conversation_id}")))

    def send_turn(self, conversation_id: str, input: str | list[dict[str, str]], *,
                  idempotency_key: str | None = None, model: str | None = None, instructions: str | None = None,
                  metadata: dict[str, str] | None = None) -> TurnAccepted:
        body = _turn_body(input, idempotency_key=idempotency_key, model=model, instructions=instructions,
                          metadata=metadata)
        return TurnAccepted.model_validate(
            _check(self.http.post(f"/v1/conversations/{conversation_id}/turns", json=body)))

    def get_turn(self, turn_id: str, *, wait_s: float | None = None) -> TurnOut:
        params = {"wait": wait_s} if wait_s else None
        return TurnOut.model_validate(_check(self.http.get(f"/v1/turns/{turn_id}", params=params)))

    def wait_for_reply(self, turn_id: str, *, timeout_s: float = 120.0) -> TurnOut:
        """The turn once it has ended (completed, failed or cancelled), long-polling until ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            turn = self.get_turn(turn_id, wait_s=max(0.0, min(LONG_POLL_S, left)))
            if turn.status.terminal or left <= 0:
                return turn

    def stream_turn(self, turn_id: str, *, last_event_id: int | None = None) -> Iterator[Event]:
        """The turn's events as they happen, ending with its terminal event."""
        yield from self._stream(f"/v1/turns/{turn_id}/events", last_event_id, stop_on_terminal=True)

    def stream_conversation(self, conversation_id: str, *, last_event_id: int | None = None) -> Iterator[Event]:
        """Every event of the conversation after ``last_event_id``, then live ones; never ends by itself."""
        yield from self._stream(f"/v1/conversations/{conversation_id}/events", last_event_id,
                                stop_on_terminal=False)

    def _stream(self, path: str, last_event_id: int | None, *, stop_on_terminal: bool) -> Iterator[Event]:
        headers = _headers(None, last_event_id)
        with connect_sse(self.http, "GET", path, headers=headers, timeout=None) as source:
            if source.response.status_code >= 400:
                source.response.read()
                _check(source.response)
            for sse in source.iter_sse():
                if not sse.data:
                    continue
                event = parse_event(sse.data)
                yield event
                if stop_on_terminal and event.type in TERMINAL_TYPES:
                    return


class AsyncParleyClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout_s: float = 30.0, http: httpx.AsyncClient | None = None) -> None:
        self.http = http or httpx.AsyncClient(base_url=base_url, headers=_headers(api_key),
                                              timeout=httpx.Timeout(timeout_s, read=LONG_POLL_S + timeout_s))

    async def __aenter__(self) -> AsyncParleyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def create_conversation(self, *, key: str | None = None, metadata: dict[str, str] | None = None
                                  ) -> Conversation:
        body = {k: v for k, v in {"key": key, "metadata": metadata}.items() if v is not None}
        return Conversation.model_validate(_check(await self.http.post("/v1/conversations", json=body)))

    async def get_conversation(self, conversation_id: str) -> ConversationWithQueue:
        return ConversationWithQueue.model_validate(
            _check(await self.http.get(f"/v1/conversations/{conversation_id}")))

    async def send_turn(self, conversation_id: str, input: str | list[dict[str, str]], *,
                        idempotency_key: str | None = None, model: str | None = None,
                        instructions: str | None = None, metadata: dict[str, str] | None = None) -> TurnAccepted:
        body = _turn_body(input, idempotency_key=idempotency_key, model=model, instructions=instructions,
                          metadata=metadata)
        return TurnAccepted.model_validate(
            _check(await self.http.post(f"/v1/conversations/{conversation_id}/turns", json=body)))

    async def get_turn(self, turn_id: str, *, wait_s: float | None = None) -> TurnOut:
        params = {"wait": wait_s} if wait_s else None
        return TurnOut.model_validate(_check(await self.http.get(f"/v1/turns/{turn_id}", params=params)))

    async def wait_for_reply(self, turn_id: str, *, timeout_s: float = 120.0) -> TurnOut:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            turn = await self.get_turn(turn_id, wait_s=max(0.0, min(LONG_POLL_S, left)))
            if turn.status.terminal or left <= 0:
                return turn

    async def stream_turn(self, turn_id: str, *, last_event_id: int | None = None) -> AsyncIterator[Event]:
        async for event in self._stream(f"/v1/turns/{turn_id}/events", last_event_id, stop_on_terminal=True):
            yield event

    async def stream_conversation(self, conversation_id: str, *, last_event_id: int | None = None
                                  ) -> AsyncIterator[Event]:
        async for event in self._stream(f"/v1/conversations/{conversation_id}/events", last_event_id,
                                        stop_on_terminal=False):
            yield event

    async def _stream(self, path: str, last_event_id: int | None, *, stop_on_terminal: bool
                      ) -> AsyncIterator[Event]:
        async with aconnect_sse(self.http, "GET", path, headers=_headers(None, last_event_id),
                                timeout=None) as source:
            if source.response.status_code >= 400:
                await source.response.aread()
                _check(source.response)
            async for sse in source.aiter_sse():
                if sse.data:
                    event = parse_event(sse.data)
                    yield event
                    if stop_on_terminal and event.type in TERMINAL_TYPES:
                        return
