"""A small fake of Slack's Web API for the bridge's tests: records every call, checks the bearer token and the
parameters Slack requires (tools-and-platforms.md §3), answers like Slack, and can answer 429 with
``Retry-After`` for a method, as Slack's per-method limits do. For Socket Mode, ``apps.connections.open`` (the
app-level token only) names its websocket, which says ``hello`` and delivers ``envelopes``, each again until
acked, as Slack does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from parley.worker.local.background import BackgroundServer

TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-A1-test-token"
BOT_USER_ID = "UBOT"
TEAM_ID = "T1"

REQUIRED = {
    "chat.postMessage": ("channel",),
    "chat.update": ("channel", "ts"),
    "chat.delete": ("channel", "ts"),
    "chat.startStream": ("channel", "thread_ts"),
    "chat.appendStream": ("channel", "ts", "markdown_text"),
    "chat.stopStream": ("channel", "ts"),
    "assistant.threads.setStatus": ("channel_id", "thread_ts", "status"),
}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    ok: bool = True


@dataclass
class Message:
    channel: str
    thread_ts: str | None
    text: str
    streaming: bool
    stops: int = 0


@dataclass
class FakeSlack:
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)
    limited: dict[str, int] = field(default_factory=dict)
    """method: how many of its next calls get a 429."""
    retry_after_s: int = 1
    streaming_refused: bool = False
    auth_down: bool = False
    """auth.test answers 500, as in a Slack outage."""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """``/files/{name}``: the bytes and content type served (``url_private``), to the bot token only."""
    downloads: list[str] = field(default_factory=list)
    """The files served, by name."""
    file_delay_s: float = 0.0
    """How long each file takes to start coming (a slow Slack)."""
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    """Socket Mode: sent in order on each connection after ``hello``, each once the one before is acked."""
    acks: list[dict[str, Any]] = field(default_factory=list)
    """What the Socket Mode client sent back (``{"envelope_id": ...}``), in order."""
    redeliveries: int = 0
    ack_timeout_s: float = 3.0
    """An envelope not acked this long is delivered again, ``retry_attempt`` one more (Slack's 3 s)."""
    drop_after_acks: int | None = None
    """Socket Mode: the first connection ends after this many acks, as Slack ends every connection after a
    few hours: with a ``disconnect`` message (``refresh_requested``) first, or without (a dropped socket)."""
    drop_says_disconnect: bool = True
    connections: int = 0
    """Socket Mode connections opened so far."""
    in_flight: set[str] = field(default_factory=set)
    """Envelope ids sent on some connection and not acked yet."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: int = 0

    def named(self, method: str) -> list[Call]:
        """The calls of ``method`` Slack answered ``ok``."""
        with self.lock:
            return [c for c in self.calls if c.method == method and c.ok]

    def _new_ts(self) -> str:
        self._ts += 1
        return f"1700000000.{self._ts:06d}"

    def answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.limited.get(method, 0) > 0:
            self.limited[method] -= 1
            return 429, {"ok": False, "error": "ratelimited"}
        missing = [name for name in REQUIRED.get(method, ()) if not params.get(name)]
        if missing:
            return 200, {"ok": False, "error": f"missing_{missing[0]}"}
        if method == "auth.test" and self.auth_down:
            return 500, {"ok": False, "error": "fatal_error"}
        if method == "auth.test":
            return 200, {"ok": True, "user_id": BOT_USER_ID, "team_id": TEAM_ID, "bot_id": "BBOT",
                         "user": "parley", "team": "Test"}
        if method == "chat.startStream":
            if self.streaming_refused:
                return 200, {"ok": False, "error": "feature_not_enabled"}
            for name in ("recipient_user_id", "recipient_team_id"):
                if not params.get(name):  # "Required when streaming to channels"
                    return 200, {"ok": False, "error": f"missing_{name}"}
            ts = self._new_ts()
            self.messages[ts] = Message(params["channel"], params["thread_ts"],
                                        params.get("markdown_text") or "", streaming=True)
            return 200, {"ok": True, "channel": params["channel"], "ts": ts}
        if method == "chat.postMessage":
            ts = self._new_ts()
            self.messages[ts] = Message(params["channel"], params.get("thread_ts"), params.get("text") or "",
                                        streaming=False)
            return 200, {"ok": True, "channel": params["channel"], "ts": ts}
        return self._existing(method, params)

    def _existing(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A call on a message already posted (by its ts)."""
        message = self.messages.get(str(params.get("ts")))
        if method not in ("chat.appendStream", "chat.stopStream", "chat.update", "chat.delete"):
            return 200, {"ok": True}
        if message is None:
            return 200, {"ok": False, "error": "message_not_found"}
        if method in ("chat.appendStream", "chat.stopStream"):
            if not message.streaming:
                return 200, {"ok": False, "error": "message_not_in_streaming_state"}
            message.text += params.get("markdown_text") or ""
            if method == "chat.stopStream":
                message.streaming, message.stops = False, message.stops + 1
            return 200, {"ok": True, "channel": message.channel, "ts": params["ts"]}
        if method == "chat.update":
            message.text = params.get("text") or ""
            return 200, {"ok": True, "channel": message.channel, "ts": params["ts"]}
        if method == "chat.delete":
            del self.messages[params["ts"]]
        return 200, {"ok": True}

    def open_connection(self, authorization: str | None, netloc: str) -> dict[str, Any]:
        """``apps.connections.open``: a websocket URL for the app-level token, refused for any other."""
        if authorization == f"Bearer {TOKEN}":
            return {"ok": False, "error": "not_allowed_token_type"}
        if authorization != f"Bearer {APP_TOKEN}":
            return {"ok": False, "error": "invalid_auth"}
        ticket = sum(1 for c in self.calls if c.method == "apps.connections.open")  # called under the lock
        return {"ok": True, "url": f"ws://{netloc}/link/?ticket=t{ticket}"}

    async def deliver(self, ws: WebSocket) -> None:
        """One Socket Mode connection: ``hello``, then each envelope not yet acked until its ack comes back
        (an acked one is done: a later connection does not send it again), then stay open (recording
        whatever else is sent) until the client leaves, or until ``drop_after_acks`` ends it."""
        await ws.accept()
        with self.lock:
            self.connections += 1
            drops = self.connections == 1 and self.drop_after_acks is not None
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"},
                            "debug_info": {"host": "fake", "approximate_connection_time": 3600}})
        delivered = 0
        try:
            while True:
                if drops and delivered == self.drop_after_acks:
                    if self.drop_says_disconnect:
                        await ws.send_json({"type": "disconnect", "reason": "refresh_requested",
                                            "debug_info": {"host": "fake"}})
                    await ws.close()
                    return
                with self.lock:  # each envelope to one open connection at a time, as Slack does
                    original = next((e for e in self.envelopes if e["envelope_id"] not in self.in_flight), None)
                    if original is not None:
                        self.in_flight.add(original["envelope_id"])
                if original is None:
                    # Nothing to send now (all acked, or in flight on another connection, which may yet
                    # close without its ack): record what the client sends, and look again.
                    with contextlib.suppress(TimeoutError):
                        self._note_ack(await asyncio.wait_for(ws.receive_json(), 0.05))
                    continue
                try:
                    await self._until_acked(ws, original)
                finally:
                    with self.lock:
                        self.in_flight.discard(original["envelope_id"])
                delivered += 1
        except WebSocketDisconnect:
            pass

    async def _until_acked(self, ws: WebSocket, original: dict[str, Any]) -> None:
        """Send ``original``, again (``retry_attempt`` one more) each ``ack_timeout_s`` until it is acked,
        on this connection or another one (a client that has reconnected acks on its new one)."""
        envelope = original
        await ws.send_json(envelope)
        while True:
            try:
                self._note_ack(await asyncio.wait_for(ws.receive_json(), self.ack_timeout_s))
            except TimeoutError:
                with self.lock:
                    if original not in self.envelopes:
                        return
                    self.redeliveries += 1
                envelope = envelope | {"retry_attempt": envelope.get("retry_attempt", 0) + 1,
                                       "retry_reason": "timeout"}
                await ws.send_json(envelope)
                continue
            with self.lock:
                if original not in self.envelopes:
                    return

    def _note_ack(self, reply: dict[str, Any]) -> None:
        """Record what the client sent; an ack settles the first waiting envelope of its id."""
        with self.lock:
            self.acks.append(reply)
            for waiting in self.envelopes:
                if waiting["envelope_id"] == reply.get("envelope_id"):
                    self.envelopes.remove(waiting)
                    break

    def app(self) -> Starlette:
        async def call(request: Request) -> JSONResponse:
            method = request.path_params["method"]
            if method == "apps.connections.open":
                with self.lock:
                    body = self.open_connection(request.headers.get("authorization"), request.url.netloc)
                    self.calls.append(Call(method, {}, time.monotonic(), 200, bool(body["ok"])))
                return JSONResponse(body)
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            raw = await request.body()
            if request.headers.get("content-type", "").startswith("application/json"):
                params = json.loads(raw or b"{}")
            else:
                params = dict(parse_qsl(raw.decode()))
            params = {**request.query_params, **params}  # some methods send theirs in the query string
            with self.lock:
                status, body = self.answer(method, params)
                self.calls.append(Call(method, params, time.monotonic(), status, bool(body.get("ok"))))
            headers = {"Retry-After": str(self.retry_after_s)} if status == 429 else {}
            return JSONResponse(body, status_code=status, headers=headers)

        async def download(request: Request) -> Response:
            name = request.path_params["name"]
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                # As Slack does: no error status, a login page.
                return Response("<html>sign in</html>", media_type="text/html")
            if name not in self.files:
                return Response("not found", status_code=404)
            await asyncio.sleep(self.file_delay_s)
            with self.lock:
                self.downloads.append(name)
            data, content_type = self.files[name]
            return Response(data, media_type=content_type)

        return Starlette(routes=[Route("/api/{method}", call, methods=["POST"]),
                                 Route("/files/{name}", download, methods=["GET"]),
                                 WebSocketRoute("/link/", self.deliver)])


@contextmanager
def fake_slack() -> Iterator[tuple[FakeSlack, str]]:
    """The fake, served on a loopback port; yields it and the base URL for ``AsyncWebClient(base_url=)``."""
    fake = FakeSlack()
    with BackgroundServer(fake.app()) as server:
        yield fake, f"{server.url}/api/"
