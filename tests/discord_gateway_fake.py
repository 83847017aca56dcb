"""A fake of Discord's gateway for the gateway bot's tests, added to the fake REST app
(tests/discord_fake.py): the websocket discord.py connects to (HELLO, IDENTIFY, READY, heartbeats
acknowledged, zlib-stream frames as Discord sends them) and the REST routes discord.py calls when it logs in.
A test pushes ``MESSAGE_CREATE`` events with :meth:`FakeGateway.message`."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from discord_fake import BOT_TOKEN
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

BOT_USER_ID = "1800000000000000008"
BOT_USER = {"id": BOT_USER_ID, "username": "parley", "discriminator": "0", "avatar": None, "bot": True,
            "global_name": None, "flags": 0, "mfa_enabled": False, "verified": True}


@dataclass
class FakeGateway:
    application_id: str
    identified: threading.Event = field(default_factory=threading.Event)
    intents: int | None = None
    """What the bot asked for in its IDENTIFY."""
    _loop: asyncio.AbstractEventLoop | None = None
    _outbox: asyncio.Queue[dict[str, Any]] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def message(self, content: str, *, channel_id: str, author_id: str, guild_id: str | None = None,
                mentions: tuple[str, ...] = (), bot: bool = False,
                attachments: tuple[dict[str, Any], ...] = ()) -> str:
        """Dispatch a MESSAGE_CREATE to the connected bot; returns the message's id."""
        assert self._loop is not None and self._outbox is not None, "the bot is not connected"
        message_id = f"19000000000000{next(self._ids):05d}"
        author = {"id": author_id, "username": "ada", "discriminator": "0", "avatar": None,
                  "global_name": "Ada", **({"bot": True} if bot else {})}
        data: dict[str, Any] = {
            "id": message_id, "channel_id": channel_id, "author": author, "content": content,
            "timestamp": "2026-12-02T14:00:00.000000+00:00", "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mention_roles": [], "attachments": list(attachments), "embeds": [],
            "pinned": False, "type": 0, "flags": 0,
            "mentions": [BOT_USER if user_id == BOT_USER_ID else {**author, "id": user_id}
                         for user_id in mentions]}
        if guild_id is not None:
            data["guild_id"] = guild_id
            data["member"] = {"roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": False,
                              "mute": False, "flags": 0}
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, {"t": "MESSAGE_CREATE", "d": data})
        return message_id


def add_gateway(app: FastAPI, gateway: FakeGateway, *, ws_url: str) -> None:  # noqa: C901 - the routes
    """Serve the gateway at ``/gateway`` and the login routes on ``app`` (``/gateway/bot`` names
    ``ws_url``)."""
    user_app = {"id": gateway.application_id, "name": "parley", "description": "", "icon": None,
                "bot_public": True, "bot_require_code_grant": False, "owner": BOT_USER, "verify_key": "00",
                "flags": 0, "interactions_endpoint_url": None}

    @app.get("/users/@me")
    async def me() -> dict[str, Any]:
        return BOT_USER

    @app.get("/oauth2/applications/@me")
    async def application() -> dict[str, Any]:
        return user_app

    @app.get("/gateway/bot")
    async def gateway_bot(request: Request) -> Any:
        if request.headers.get("authorization") != f"Bot {BOT_TOKEN}":
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)
        return {"url": ws_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}

    @app.websocket("/gateway")
    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        deflate = zlib.compressobj()
        seq = itertools.count(1)

        async def send(op: int, data: Any, event: str | None = None) -> None:
            raw = json.dumps({"op": op, "d": data, "s": next(seq) if op == 0 else None, "t": event}).encode()
            await ws.send_bytes(deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH))

        gateway._loop, gateway._outbox = asyncio.get_running_loop(), asyncio.Queue()
        await send(10, {"heartbeat_interval": 41250})
        while (identify := json.loads(await ws.receive_text()))["op"] != 2:
            if identify["op"] == 1:  # discord.py's first heartbeat may come before its IDENTIFY
                await send(11, None)
        if identify["d"]["token"] != BOT_TOKEN:
            await ws.close(4004)  # Discord's "Authentication failed"
            return
        gateway.intents = int(identify["d"]["intents"])
        await send(0, {"v": 10, "user": BOT_USER, "guilds": [], "session_id": "fake-session",
                       "resume_gateway_url": ws_url, "shard": [0, 1], "private_channels": [],
                       "application": {"id": gateway.application_id, "flags": 0}}, "READY")
        gateway.identified.set()

        async def heartbeats() -> None:
            while True:
                frame = json.loads(await ws.receive_text())
                if frame.get("op") == 1:
                    await send(11, None)

        beating = asyncio.create_task(heartbeats())
        try:
            while not beating.done():
                getting = asyncio.ensure_future(gateway._outbox.get())
                done, _ = await asyncio.wait({getting, beating}, return_when=asyncio.FIRST_COMPLETED)
                if getting in done:
                    event = getting.result()
                    await send(0, event["d"], event["t"])
                else:
                    getting.cancel()
        except WebSocketDisconnect:
            pass
        finally:
            beating.cancel()
