"""The Discord bridge's inbound side (api/bridges/discord/inbound.py) on the real API and Redis, with real
Ed25519 signatures: PING, refused signatures, the slash command made one turn of its channel's conversation,
and the interaction token kept apart from everything the turn exposes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from conftest import wait_until
from discord_support import CHANNEL_ID, GUILD_ID, discord_settings, signed_post, slash_command
from nacl.signing import SigningKey

from parley.api.bridges.discord.decide import turn_for_interaction
from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

KEYS = Keys()


@pytest.fixture(name="key")
def _key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(name="discord_api")
def _discord_api(settings: Settings, key: SigningKey) -> Iterator[str]:
    with BackgroundServer(create_app(discord_settings(settings, key))) as server:
        yield server.url


def _conversation(redis_client: redis.Redis, key: str) -> str | None:
    return redis_client.get(KEYS.conversation_key("discord", key))  # type: ignore[return-value]


def test_turn_for_interaction_decides_from_the_body_alone() -> None:
    """The command with a prompt is a turn keyed by guild (or dm) and channel, with ids as metadata and no
    token there; other commands, blank prompts, components and pings are not turns."""
    body = slash_command("hello there")
    turn = turn_for_interaction(body, command="ask")
    assert turn is not None and turn.text == "hello there"
    assert turn.key == f"discord:{GUILD_ID}:{CHANNEL_ID}" and turn.token == body["token"]
    assert turn.metadata["interaction_id"] == body["id"] and turn.metadata["user_id"] == "1400000000000000004"
    assert body["token"] not in repr(turn) and body["token"] not in json.dumps(turn.metadata)
    dm = turn_for_interaction(slash_command("hi", guild_id=None, channel_id="77"), command="ask")
    assert dm is not None and dm.key == "discord:dm:77" and dm.user_id == "1400000000000000004"
    assert turn_for_interaction(slash_command("hi", command="other"), command="ask") is None
    assert turn_for_interaction(slash_command("   "), command="ask") is None
    assert turn_for_interaction({"type": 1}, command="ask") is None
    assert turn_for_interaction({**body, "type": 3}, command="ask") is None  # a button press
    nested = {**body, "data": {"name": "ask", "options": [{"name": "sub", "type": 1, "options": [
        {"name": "prompt", "type": 3, "value": "deep"}]}]}}
    assert (found := turn_for_interaction(nested, command="ask")) is not None and found.text == "deep"


def test_ping_is_answered_with_pong(discord_api: str, key: SigningKey) -> None:
    """Discord's endpoint check: a signed PING gets ``{"type": 1}`` as JSON."""
    response = signed_post(discord_api, key, {"type": 1, "id": "1", "application_id": "2"})
    assert response.status_code == 200 and response.json() == {"type": 1}
    assert response.headers["content-type"].startswith("application/json")


def test_bad_and_missing_signatures_are_refused(discord_api: str, key: SigningKey,
                                                redis_client: redis.Redis) -> None:
    """A body signed by another key, a tampered body, garbage and absent headers are all 401 (a signed body
    that is no interaction a 400), and none of them makes a conversation."""
    body = slash_command("sneaky")
    assert signed_post(discord_api, SigningKey.generate(), body).status_code == 401
    assert signed_post(discord_api, key, {"type": 1}, headers={}).status_code == 401
    assert signed_post(discord_api, key, body, headers={"x-signature-ed25519": "zz",
                                                        "x-signature-timestamp": "1"}).status_code == 401
    good = signed_post(discord_api, key, {"type": 1})
    assert good.status_code == 200
    assert signed_post(discord_api, key, b"[1, 2]").status_code == 400  # signed, but no interaction
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    signature = key.sign(stamp.encode() + raw).signature.hex()
    tampered = raw.replace(b"sneaky", b"sneakz")
    headers = {"x-signature-ed25519": signature, "x-signature-timestamp": stamp}
    assert signed_post(discord_api, key, tampered, headers=headers).status_code == 401
    assert _conversation(redis_client, f"discord:{GUILD_ID}:{CHANNEL_ID}") is None


def test_the_slash_command_becomes_one_turn_and_its_token_stays_private(discord_api: str, key: SigningKey,
                                                                        redis_client: redis.Redis) -> None:
    """The command is deferred (type 5) within Discord's 3 s; posted twice (a retry) it is one turn of the
    channel's conversation, announced for the relay; the token is kept for 15 minutes under its own key and
    is in neither the turn's record nor its events."""
    body = slash_command("what is parley?")
    started = time.monotonic()
    first = signed_post(discord_api, key, body)
    assert first.status_code == 200 and first.json() == {"type": 5}
    assert time.monotonic() - started < 3
    assert signed_post(discord_api, key, body).json() == {"type": 5}
    conv = _conversation(redis_client, f"discord:{GUILD_ID}:{CHANNEL_ID}")
    assert conv is not None and redis_client.hget(KEYS.conversation(conv), "tenant") == "discord"
    turns = [k for k in redis_client.scan_iter(KEYS.turn_prefix(conv) + "*") if not k.endswith(":tools")]
    assert len(turns) == 1
    record = redis_client.hgetall(turns[0])
    turn_id = turns[0].rsplit(":", 1)[1]
    assert record["idempotency_key"] == body["id"] and "what is parley?" in record["input"]
    assert json.loads(record["metadata"])["interaction_id"] == body["id"]
    token_key = KEYS.discord_interaction_token(conv, turn_id)
    assert redis_client.get(token_key) == body["token"]
    assert 890 <= redis_client.ttl(token_key) <= 900
    events = redis_client.xrange(KEYS.events(conv))
    assert events and all(body["token"] not in json.dumps(fields) for _, fields in events)
    assert all(body["token"] not in value for value in record.values())
    announced = redis_client.xrange(KEYS.bridge_turns("discord"))
    assert {fields["turn_id"] for _, fields in announced} == {turn_id}


def test_other_commands_get_a_visible_answer_not_an_error(discord_api: str, key: SigningKey,
                                                          redis_client: redis.Redis) -> None:
    """Another command and a blank prompt are answered 200 with an ephemeral message; no turn is made."""
    for body in (slash_command("hi", command="other"), slash_command(" ")):
        response = signed_post(discord_api, key, body)
        assert response.status_code == 200
        answer = response.json()
        assert answer["type"] == 4 and answer["data"]["flags"] == 64 and "/ask" in answer["data"]["content"]
    assert _conversation(redis_client, f"discord:{GUILD_ID}:{CHANNEL_ID}") is None


def test_a_slow_first_conversation_is_answered_in_time_and_made_anyway(settings: Settings, key: SigningKey,
                                                                       redis_client: redis.Redis) -> None:
    """Making a channel's conversation upstream takes longer than Discord's 3 s allow: the command is
    answered in time (ephemeral, ask again), the creation goes on, and the next command becomes a turn."""
    from fastapi import FastAPI

    slow = FastAPI()

    @slow.post("/v1/conversations")
    async def create() -> dict[str, object]:
        await asyncio.sleep(2.8)
        return {"id": "conv_slow0123456789abcdef", "object": "conversation", "created_at": int(time.time()),
                "metadata": {}}

    with BackgroundServer(slow) as upstream:
        bridge = discord_settings(settings, key).model_copy(update={"openai_base_url": f"{upstream.url}/v1"})
        with BackgroundServer(create_app(bridge)) as api:
            started = time.monotonic()
            first = signed_post(api.url, key, slash_command("are you there?"))
            assert time.monotonic() - started < 2.9
            assert first.json()["type"] == 4 and "ask again" in first.json()["data"]["content"]
            wait_until(lambda: _conversation(redis_client, f"discord:{GUILD_ID}:{CHANNEL_ID}"), timeout_s=5,
                       message="the creation to finish")
            assert signed_post(api.url, key, slash_command("now?")).json() == {"type": 5}
    assert _conversation(redis_client, f"discord:{GUILD_ID}:{CHANNEL_ID}") == "conv_slow0123456789abcdef"


def test_the_endpoint_needs_no_api_key_when_the_api_has_keys(settings: Settings, key: SigningKey,
                                                             redis_client: redis.Redis) -> None:
    """With API keys required (as in production), Discord's requests, which carry no key, are let in by their
    signature: PING and the command work, and the turn is in the bridge's tenant, not a key's."""
    from pydantic import SecretStr

    bridge = discord_settings(settings, key).model_copy(update={"api_keys": [SecretStr("sk-test-key-123")]})
    with BackgroundServer(create_app(bridge)) as api:
        assert httpx.post(f"{api.url}/v1/conversations", json={}, timeout=10).status_code == 401
        assert signed_post(api.url, key, {"type": 1}).json() == {"type": 1}
        assert signed_post(api.url, key, slash_command("keys?")).json() == {"type": 5}
    conv = _conversation(redis_client, f"discord:{GUILD_ID}:{CHANNEL_ID}")
    assert conv is not None and redis_client.hget(KEYS.conversation(conv), "tenant") == "discord"


def test_a_commands_image_attachment_is_an_image_part_of_the_turn(discord_api: str, key: SigningKey,
                                                                  redis_client: redis.Redis) -> None:
    """``/ask`` with an image in its attachment option (resolved by Discord into data.resolved): the
    stored turn's input is a user message with the prompt and an input_image of the attachment's URL."""
    body = slash_command("what is on this picture?")
    url = "https://cdn.discordapp.com/attachments/1300000000000000003/1700000000000000007/cat.png?ex=1"
    body["data"]["options"].append({"name": "file", "type": 11, "value": "1700000000000000007"})
    body["data"]["resolved"] = {"attachments": {"1700000000000000007": {
        "id": "1700000000000000007", "filename": "cat.png", "size": 51234, "url": url, "proxy_url": url,
        "content_type": "image/png", "width": 640, "height": 480}}}
    assert signed_post(discord_api, key, body).json() == {"type": 5}
    conv = _conversation(redis_client, f"discord:{GUILD_ID}:{CHANNEL_ID}")
    assert conv is not None
    [turn] = [k for k in redis_client.scan_iter(KEYS.turn_prefix(conv) + "*") if not k.endswith(":tools")]
    [message] = json.loads(redis_client.hget(turn, "input") or "")
    assert message == {"role": "user", "content": [
        {"type": "input_text", "text": "what is on this picture?"},
        {"type": "input_image", "image_url": url, "detail": "auto"}]}
