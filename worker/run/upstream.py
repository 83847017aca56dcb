"""Calls to OpenAI: one generation per attempt, and the checks that make a retried turn append only once.

Exactly-once strategy (README "Exactly-once upstream append"):
1. The generation is streamed, so the response id is known at ``response.created``; it is recorded on the
   turn (fenced) before any output is awaited.
2. A retried or resumed turn with a recorded response id retrieves that response instead of sending again;
   a response still running is polled to its end.
3. Without a recorded id, the conversation's items after the last checkpoint (the final item of the previous
   completed turn) are read: since parley is the only writer and turns run one at a time, anything there is
   this turn's, and its reply is taken from it.
4. The SDK's own retries would resend without an idempotency key, so the client uses ``max_retries=0``.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from ..errors import PermanentUpstreamError, RetryableUpstreamError, translate
from ..messages import Turn
from ..request import upstream_body
from ..settings import Settings
from ..texting.batch import request_input

POLL_INTERVAL_S = 0.25
POLL_LIMIT_S = 600.0


@dataclass(frozen=True)
class Reply:
    output_text: str
    response_id: str | None
    usage: dict[str, Any] | None
    last_item_id: str | None
    recovered: bool = False
    output: tuple[dict[str, Any], ...] = ()
    """The response's output items as JSON (the tool loop reads its ``function_call`` items)."""


CONNECTIONS_PER_CLIENT = 32
"""httpcore's pool scans all of its connections on every request and every release; with 400 connections in
one client that scan was a quarter of a busy worker's CPU (py-spy), so a worker spreads its threads over
several clients of at most this many connections."""


def make_clients(settings: Settings, *, concurrency: int) -> list[openai.OpenAI]:
    shards = max(1, math.ceil(concurrency / CONNECTIONS_PER_CLIENT))
    return [make_client(settings, concurrency=math.ceil(concurrency / shards)) for _ in range(shards)]


def make_client(settings: Settings, *, concurrency: int) -> openai.OpenAI:
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "local-emulator"
    # Keep-alive below the server's (uvicorn's is 5 s) so a pooled connection is not closed under us.
    limits = httpx2.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency,
                           keepalive_expiry=4.0)
    http_client = httpx2.Client(limits=limits, timeout=httpx2.Timeout(
        settings.openai_timeout_s, connect=settings.openai_connect_timeout_s))
    return openai.OpenAI(api_key=api_key, base_url=settings.openai_base_url, max_retries=0,
                         http_client=http_client)


def warm_up() -> None:
    """Build the SDK's lazily-constructed event and response types once, before threads race to do it
    (a cold process streaming on 64 threads spent 1.36 s of CPU on this, research.md)."""
    from openai._models import construct_type
    from openai.types.responses import Response, ResponseStreamEvent

    response = {"id": "resp_warm", "object": "response", "created_at": 0, "status": "completed", "model": "m",
                "output": [], "tools": [], "parallel_tool_calls": True, "tool_choice": "auto", "metadata": {}}
    construct_type(type_=Response, value=response)
    for event_type in ("response.created", "response.in_progress", "response.completed"):
        construct_type(type_=ResponseStreamEvent, value={"type": event_type, "sequence_number": 0,
                                                          "response": response})
    construct_type(type_=ResponseStreamEvent, value={"type": "response.output_text.delta",
                                                      "sequence_number": 1, "item_id": "m", "output_index": 0,
                                                      "content_index": 0, "delta": "x", "logprobs": []})


def _sse_data(line: str) -> dict[str, Any] | None:
    """The JSON object of an SSE ``data:`` line, or None for other lines (event names, blanks, comments)."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == "[DONE]":
        return None
    value = json.loads(payload)
    return value if isinstance(value, dict) else None


def _reply_from(response: dict[str, Any], *, recovered: bool = False) -> Reply:
    """The reply in a response's JSON. Read as a dict: the SDK's parse of a ``Response`` builds a pydantic
    TypeAdapter on every call, a tenth of a busy worker's CPU (py-spy)."""
    status = response.get("status")
    if status != "completed":
        if status == "failed":
            error = response.get("error") or {}
            raise RetryableUpstreamError(error.get("message") or "response failed", reason="response_failed",
                                         code=error.get("code"))
        reason = (response.get("incomplete_details") or {}).get("reason") or status
        raise PermanentUpstreamError(f"response {status}: {reason}", reason=f"response_{reason}")
    output = response.get("output") or []
    # What the SDK's ``Response.output_text`` joins: the output_text parts of the message items.
    text = "".join(part.get("text", "") for item in output if item.get("type") == "message"
                   for part in item.get("content") or [] if part.get("type") == "output_text")
    return Reply(output_text=text, response_id=response.get("id"), usage=response.get("usage"),
                 last_item_id=output[-1].get("id") if output else None, recovered=recovered,
                 output=tuple(output))


class Upstream:
    def __init__(self, clients: openai.OpenAI | Sequence[openai.OpenAI], settings: Settings) -> None:
        self.clients = [clients] if isinstance(clients, openai.OpenAI) else list(clients)
        self.settings = settings
        for client in self.clients:
            # Resources are built lazily on first use; build them now rather than in the first busy second.
            client.responses, client.conversations  # noqa: B018
        self._local = threading.local()
        self._assigned = itertools.count()

    @property
    def client(self) -> openai.OpenAI:
        """The client of the calling thread: each thread keeps one, and the threads are spread evenly."""
        client: openai.OpenAI | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.clients[next(self._assigned) % len(self.clients)]
        return client

    def _params(self, turn: Turn, round_input: list[dict[str, Any]] | None = None,
                tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The request body of ``responses.create``. It is passed as ``extra_body``: given as typed arguments,
        the SDK walks each value against its TypedDict annotations (hashing Literal unions of every model
        name), a sixth of the call's CPU for a body that is plain JSON already and goes out the same. The
        turn's resolved options (tools, text, reasoning, ...) go under the fields the worker owns."""
        params: dict[str, Any] = {
            "conversation": turn.conversation_id,
            "input": request_input(turn),
            # The settings only for a turn stored before the ingress resolved model and instructions.
            "model": turn.model or self.settings.model,
            "metadata": {**turn.metadata, "parley_turn_id": turn.id} if len(turn.metadata) < 16
            else turn.metadata,
        }
        instructions = turn.instructions or self.settings.instructions
        if instructions:
            params["instructions"] = instructions
        body = upstream_body(turn.request, params)
        if round_input is not None:  # a tool round: only the outputs (resending stored items is a 400)
            body["input"] = round_input
            if body.get("tool_choice") not in (None, "auto", "none"):
                # A forced choice would force a call after the outputs too, and the loop would never end.
                body["tool_choice"] = "auto"
        if tools:
            # Tools and instructions go with every round: they are per request, not kept by the conversation.
            own = {tool.get("name") for tool in body.get("tools", [])}  # the turn's definition wins
            body["tools"] = [*body.get("tools", []), *(tool for tool in tools if tool["name"] not in own)]
        return body

    def generate_whole(self, turn: Turn, **round_: Any) -> Reply:
        """One non-streamed attempt: cheaper on CPU, but the response id is only known at the end, so a crash
        mid-call is recovered from the conversation's items (strategy 3) rather than by the id. ``round_``:
        a tool round's ``round_input`` and ``tools`` (see ``_params``)."""
        try:
            raw = self.client.responses.with_raw_response.create(extra_body=self._params(turn, **round_))
            return _reply_from(json.loads(raw.http_response.content))
        except (openai.OpenAIError, httpx2.TransportError) as exc:
            raise translate(exc) from exc

    def generate(self, turn: Turn, *, on_created: Callable[[str], None],
                 on_delta: Callable[[str], None], **round_: Any) -> Reply:
        """One streamed attempt. Raises an ``UpstreamError`` subclass on failure."""
        reply: Reply | None = None
        try:
            # The raw event stream, read with json.loads: the SDK's per-event models were about half of a
            # worker's CPU (py-spy). Requests, auth and HTTP errors still go through the SDK.
            create = self.client.responses.with_streaming_response.create
            with create(stream=True, extra_body=self._params(turn, **round_)) as raw:
                # Read to the end even after the terminal event: a response closed early takes its
                # keep-alive connection with it, and reconnecting on every turn costs more than the read.
                for line in raw.iter_lines():
                    event = _sse_data(line)
                    if event is None:
                        continue
                    kind = event.get("type")
                    if kind == "response.output_text.delta":
                        on_delta(event["delta"])
                    elif kind == "response.created":
                        on_created(event["response"]["id"])
                    elif kind in ("response.completed", "response.failed", "response.incomplete"):
                        reply = _reply_from(event["response"])
                    elif kind == "error" or event.get("error"):
                        error = event.get("error") if isinstance(event.get("error"), dict) else event
                        raise RetryableUpstreamError(str(error.get("message") or "stream error"),
                                                     reason="stream_error", code=error.get("code"))
        except (openai.OpenAIError, httpx2.TransportError) as exc:
            raise translate(exc) from exc
        if reply is None:
            raise RetryableUpstreamError("stream ended before response.completed", reason="stream_ended")
        return reply

    def recover(self, turn: Turn, *, last_item_id: str | None) -> Reply | None:
        """What an earlier attempt of ``turn`` already got upstream, or ``None`` if it is safe to send."""
        try:
            if turn.response_id:
                return self._recover_response(turn.response_id)
            return self._recover_from_items(turn, last_item_id)
        except (openai.OpenAIError, httpx2.TransportError) as exc:
            raise translate(exc) from exc

    def _recover_response(self, response_id: str) -> Reply | None:
        deadline = time.monotonic() + POLL_LIMIT_S
        while True:
            try:
                response = self.client.responses.retrieve(response_id)
            except openai.NotFoundError:
                return None
            if response.status not in ("queued", "in_progress"):
                break
            if time.monotonic() > deadline:
                raise RetryableUpstreamError("earlier response still running", reason="still_running")
            time.sleep(POLL_INTERVAL_S)
        if response.status in ("failed", "cancelled"):
            # A failed or cancelled response appends nothing to the conversation: sending again is safe.
            return None
        return _reply_from(response.model_dump(mode="json"), recovered=True)

    def _recover_from_items(self, turn: Turn, last_item_id: str | None) -> Reply | None:
        page = self.client.conversations.items.list(
            turn.conversation_id, order="asc", limit=100, **({"after": last_item_id} if last_item_id else {}))
        items = list(page)
        wanted = last_user_text(turn.input)
        # Our input, if an earlier attempt got it stored: the first matching user message after the
        # checkpoint.
        mine = next((i for i, item in enumerate(items) if _role(item) == "user" and _text(item) == wanted),
                    None)
        if mine is None:
            return None
        replies = [item for item in items[mine + 1:] if _role(item) == "assistant"]
        if not replies:
            raise RetryableUpstreamError("input is stored but the reply is not yet", reason="still_running")
        return Reply(output_text=_text(replies[-1]), response_id=None, usage=None, last_item_id=items[-1].id,
                     recovered=True)


def _role(item: Any) -> str | None:
    return getattr(item, "role", None) if getattr(item, "type", None) == "message" else None


def _text(item: Any) -> str:
    return "".join(getattr(part, "text", "") for part in getattr(item, "content", []) or [])


def last_user_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    users = [message for message in value if message.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
