"""A fake of the Discord REST routes the bridge uses, served on a loopback port (``BackgroundServer``): the
interaction webhooks (``@original`` edits, follow-ups, their edits and deletes), channel messages (posted,
edited, deleted) and the commands
bulk overwrite, with Discord's answers for a bad token (401, code 50027 for a webhook) and, on demand, its
rate limits (429 with ``Retry-After`` and the ``X-RateLimit-*`` headers). Every call is recorded."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

BOT_TOKEN = "fake-bot-token.secret"


@dataclass
class Call:
    method: str
    route: str
    """The route's template (``webhook_original``, ``webhook_followup``, ``webhook_message``,
    ``webhook_delete``, ``channel``, ``channel_edit``, ``channel_delete``, ``commands``), so tests never need a token to find a call."""
    content: str | None
    at: float
    message_id: str | None = None
    status: int = 200
    reply_to: str | None = None
    """A channel message's ``message_reference``: the message it answers."""


@dataclass
class FakeDiscord:
    tokens: set[str] = field(default_factory=set)
    """Interaction tokens that are valid; any other one gets 50027."""
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)
    """Message id (``original:<token>`` for a reply) -> its content now."""
    owners: dict[str, str] = field(default_factory=dict)
    """Follow-up message id -> the interaction token it was posted with."""
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    throttle_next: int = 0
    """The next this many calls get a 429."""
    retry_after_s: float = 0.5
    missing_access: bool = False
    """Webhook edits answer 403 Missing Access (50001), as for a channel the app can no longer see."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def of(self, route: str, *, ok: bool = True) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.route == route and (c.status < 300 or not ok)]

    def reply_of(self, token: str) -> list[str]:
        """The reply's messages in order: ``@original``, then its follow-ups."""
        with self.lock:
            followups = [c.message_id for c in self.calls if c.route == "webhook_followup" and c.status < 300
                         and c.message_id and self.owners.get(c.message_id) == token]
            return [self.messages.get(f"original:{token}", ""), *(self.messages[m] for m in followups if m)]

    def channel_messages(self, channel_id: str) -> list[str]:
        """The messages posted in a channel with the bot token, in order, as they read now."""
        with self.lock:
            return [self.messages[c.message_id] for c in self.calls if c.route == "channel" and c.message_id
                    and self.owners.get(c.message_id) == f"channel:{channel_id}"]


def fake_app(fake: FakeDiscord) -> FastAPI:  # noqa: C901 - one small closure per route
    app = FastAPI()

    def record(method: str, route: str, content: str | None, message_id: str | None = None,
               status: int = 200, reply_to: str | None = None) -> None:
        with fake.lock:
            fake.calls.append(Call(method, route, content, time.monotonic(), message_id, status, reply_to))

    def refuse(method: str, route: str) -> JSONResponse | None:
        """A 429 while ``throttle_next`` lasts (recorded, as Discord counts it)."""
        with fake.lock:
            if fake.throttle_next <= 0:
                return None
            fake.throttle_next -= 1
        record(method, route, None, status=429)
        return JSONResponse({"message": "You are being rate limited.", "retry_after": fake.retry_after_s,
                             "global": False}, status_code=429,
                            headers={"retry-after": str(fake.retry_after_s), "x-ratelimit-remaining": "0",
                                     "x-ratelimit-reset-after": str(fake.retry_after_s),
                                     "x-ratelimit-scope": "user"})

    def ok(body: Any) -> JSONResponse:
        return JSONResponse(body, headers={"x-ratelimit-limit": "5", "x-ratelimit-remaining": "4",
                                           "x-ratelimit-reset-after": "1.0", "x-ratelimit-bucket": "fake"})

    def bad_token(method: str, route: str) -> JSONResponse:
        record(method, route, None, status=401)
        return JSONResponse({"message": "Invalid Webhook Token", "code": 50027}, status_code=401)

    def content_of(body: dict[str, Any]) -> str | JSONResponse:
        content = body.get("content")
        if not isinstance(content, str) or not content.strip() or len(content) > 2000:
            return JSONResponse({"message": "Invalid Form Body", "code": 50035}, status_code=400)
        return content

    @app.patch("/webhooks/{app_id}/{token}/messages/{message_id}")
    async def edit(app_id: str, token: str, message_id: str, request: Request) -> JSONResponse:
        route = "webhook_original" if message_id == "@original" else "webhook_message"
        if (throttled := refuse("PATCH", route)) is not None:
            return throttled
        if token not in fake.tokens:
            return bad_token("PATCH", route)
        if fake.missing_access:
            record("PATCH", route, None, status=403)
            return JSONResponse({"message": "Missing Access", "code": 50001}, status_code=403)
        content = content_of(await request.json())
        if isinstance(content, JSONResponse):
            return content
        key = f"original:{token}" if message_id == "@original" else message_id
        if key != f"original:{token}" and fake.owners.get(key) != token:
            return JSONResponse({"message": "Unknown Message", "code": 10008}, status_code=404)
        with fake.lock:
            fake.messages[key] = content
        record("PATCH", route, content, key)
        return ok({"id": key, "content": content})

    @app.delete("/webhooks/{app_id}/{token}/messages/{message_id}", response_model=None)
    async def delete_follow_up(app_id: str, token: str, message_id: str) -> Response:
        if (throttled := refuse("DELETE", "webhook_delete")) is not None:
            return throttled
        if token not in fake.tokens:
            return bad_token("DELETE", "webhook_delete")
        if fake.owners.get(message_id) != token:
            return JSONResponse({"message": "Unknown Message", "code": 10008}, status_code=404)
        with fake.lock:
            del fake.messages[message_id], fake.owners[message_id]
        record("DELETE", "webhook_delete", None, message_id)
        return Response(status_code=204)

    @app.post("/webhooks/{app_id}/{token}")
    async def follow_up(app_id: str, token: str, request: Request) -> JSONResponse:
        if (throttled := refuse("POST", "webhook_followup")) is not None:
            return throttled
        if token not in fake.tokens:
            return bad_token("POST", "webhook_followup")
        content = content_of(await request.json())
        if isinstance(content, JSONResponse):
            return content
        message_id = str(next(fake._ids))
        with fake.lock:
            fake.messages[message_id] = content
            fake.owners[message_id] = token
        record("POST", "webhook_followup", content, message_id)
        return ok({"id": message_id, "content": content})

    @app.post("/channels/{channel_id}/messages")
    async def channel_message(channel_id: str, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bot {BOT_TOKEN}":
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)
        body = await request.json()
        content = content_of(body)
        if isinstance(content, JSONResponse):
            return content
        message_id = str(next(fake._ids))
        with fake.lock:
            fake.messages[message_id] = content
            fake.owners[message_id] = f"channel:{channel_id}"
        record("POST", "channel", content, message_id,
               reply_to=(body.get("message_reference") or {}).get("message_id"))
        return ok({"id": message_id, "channel_id": channel_id, "content": content})

    @app.patch("/channels/{channel_id}/messages/{message_id}")
    async def edit_channel_message(channel_id: str, message_id: str, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bot {BOT_TOKEN}":
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)
        if fake.owners.get(message_id) != f"channel:{channel_id}":
            return JSONResponse({"message": "Unknown Message", "code": 10008}, status_code=404)
        content = content_of(await request.json())
        if isinstance(content, JSONResponse):
            return content
        with fake.lock:
            fake.messages[message_id] = content
        record("PATCH", "channel_edit", content, message_id)
        return ok({"id": message_id, "channel_id": channel_id, "content": content})

    @app.delete("/channels/{channel_id}/messages/{message_id}", response_model=None)
    async def delete_channel_message(channel_id: str, message_id: str, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bot {BOT_TOKEN}":
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)
        if fake.owners.get(message_id) != f"channel:{channel_id}":
            return JSONResponse({"message": "Unknown Message", "code": 10008}, status_code=404)
        with fake.lock:
            del fake.messages[message_id], fake.owners[message_id]
        record("DELETE", "channel_delete", None, message_id)
        return Response(status_code=204)

    @app.put("/applications/{app_id}/commands")
    async def overwrite_commands(app_id: str, request: Request) -> JSONResponse:
        if (throttled := refuse("PUT", "commands")) is not None:
            return throttled
        if request.headers.get("authorization") != f"Bot {BOT_TOKEN}":
            record("PUT", "commands", None, status=401)
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)
        body = await request.json()
        stored = [{**command, "id": str(900 + n), "application_id": app_id} for n, command in enumerate(body)]
        with fake.lock:
            fake.commands[app_id] = stored
        record("PUT", "commands", None)
        return ok(stored)

    return app
