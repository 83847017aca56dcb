"""Signed Discord interactions for the bridge's tests: a key pair made per test, bodies shaped as Discord
sends them, and the test settings with the bridge on."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import redis.asyncio
from loop_thread import serving
from nacl.signing import SigningKey

from parley.api.bridges.discord.relay import DiscordRelay
from parley.api.bridges.discord.rest import DiscordRest
from parley.worker.settings import Settings

APPLICATION_ID = "1100000000000000001"
GUILD_ID = "1200000000000000002"
CHANNEL_ID = "1300000000000000003"
USER_ID = "1400000000000000004"
_ids = itertools.count(1)


def discord_settings(settings: Settings, key: SigningKey, **extra: Any) -> Settings:
    return settings.model_copy(update={"discord_public_key": key.verify_key.encode().hex(),
                                       "discord_application_id": APPLICATION_ID, **extra})


def slash_command(text: str, *, command: str = "ask", guild_id: str | None = GUILD_ID,
                  channel_id: str = CHANNEL_ID, interaction_id: str | None = None) -> dict[str, Any]:
    """An APPLICATION_COMMAND interaction as Discord posts it (the fields the bridge reads, a few more)."""
    n = next(_ids)
    body: dict[str, Any] = {
        "type": 2, "id": interaction_id or f"15000000000000{n:05d}", "application_id": APPLICATION_ID,
        "token": f"aW50ZXJhY3Rpb246{n:05d}:secret-token-{n}", "version": 1, "channel_id": channel_id,
        "channel": {"id": channel_id, "type": 0},
        "data": {"id": "1600000000000000006", "name": command, "type": 1,
                 "options": [{"name": "prompt", "type": 3, "value": text}]},
        "locale": "en-US"}
    user = {"id": USER_ID, "username": "ada"}
    if guild_id is None:
        body["user"] = user
    else:
        body["guild_id"] = guild_id
        body["member"] = {"user": user, "roles": []}
    return body


def signed_post(base_url: str, key: SigningKey, body: dict[str, Any] | bytes, *,
                headers: dict[str, str] | None = None) -> httpx.Response:
    """POST ``body`` to the interactions endpoint, signed as Discord signs it (``headers`` replace the
    signature headers when given)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + raw).signature.hex()
    sent = headers if headers is not None else {"x-signature-ed25519": signature,
                                                 "x-signature-timestamp": timestamp}
    return httpx.post(f"{base_url}/discord/interactions", content=raw, timeout=10,
                      headers={"content-type": "application/json", **sent})


@contextmanager
def relay(settings: Settings, *, consumer: str = "r1", claim_idle_ms: int = 60_000) -> Iterator[None]:
    """A relay on an event loop of its own thread; leaving stops it without acknowledging what it had not
    finished (as a killed relay leaves it)."""
    async def main(stop: asyncio.Event) -> None:
        client = redis.asyncio.Redis.from_url(settings.redis_url_required, decode_responses=True)
        bot = settings.discord_bot_token.get_secret_value() if settings.discord_bot_token else None
        async with httpx.AsyncClient(timeout=10) as http:
            rest = DiscordRest(http, api_url=settings.discord_api_url, bot_token=bot)
            relay = DiscordRelay(settings, client, rest, consumer=consumer, claim_idle_ms=claim_idle_ms)
            await relay.run(stop)
        await client.aclose()

    with serving(main, join_s=10):
        yield
