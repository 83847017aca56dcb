"""The gateway bot (api/bridges/discord/bot.py, discord.py) against a fake gateway and REST API: DMs and
messages that mention it become turns of their channel's conversation; other messages, and bots', do not;
with a worker and the relay, the reply is a channel message answering the user's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from conftest import settings_env, wait_until
from discord_fake import BOT_TOKEN, FakeDiscord, fake_app
from discord_gateway_fake import BOT_USER_ID, FakeGateway, add_gateway
from discord_support import APPLICATION_ID, GUILD_ID, USER_ID, relay
from pydantic import SecretStr
from stack import workers

from parley.api.bridges.discord.decide import turn_for_message
from parley.worker.local.background import BackgroundServer, free_port
from parley.worker.local.processes import spawn, stop
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

KEYS = Keys()
DM_CHANNEL = "2000000000000000010"
GUILD_CHANNEL = "2100000000000000011"
MESSAGE_CONTENT = 1 << 15


@pytest.fixture(name="discord_world")
def _discord_world(settings: Settings) -> Iterator[tuple[FakeDiscord, FakeGateway, Settings]]:
    port = free_port("127.0.0.1")
    fake, gateway = FakeDiscord(), FakeGateway(application_id=APPLICATION_ID)
    app = fake_app(fake)
    add_gateway(app, gateway, ws_url=f"ws://127.0.0.1:{port}/gateway")
    with BackgroundServer(app, port=port) as server:
        bridge = settings.model_copy(update={
            "discord_api_url": server.url, "discord_application_id": APPLICATION_ID,
            "discord_bot_token": SecretStr(BOT_TOKEN)})
        yield fake, gateway, bridge


@contextmanager
def bot(settings: Settings, gateway: FakeGateway) -> Iterator[None]:
    """``parley discord-bot`` as its own process (as it runs), connected to the fake gateway."""
    process = spawn(["python", "-m", "parley", "discord-bot"], env=settings_env(settings), quiet=True)
    try:
        assert gateway.identified.wait(20), "the bot did not connect to the gateway"
        yield
    finally:
        stop(process)


def test_turn_for_message_decides_from_the_message_alone() -> None:
    """A DM is a turn; a guild message only if it mentions the bot (either mention form), without the
    mention in its text; a bot's message, the bot's own, and a bare mention are not turns."""
    base = {"message_id": "1", "channel_id": "2", "guild_id": None, "author_id": USER_ID,
            "author_is_bot": False, "content": "hi", "mentioned_ids": [], "bot_user_id": BOT_USER_ID,
            "application_id": APPLICATION_ID}
    decide: Any = turn_for_message  # the keyword arguments are built as a dict below
    dm = decide(**base)
    assert dm is not None and dm.key == "discord:dm:2" and dm.idempotency_key == "message:1"
    assert dm.metadata["message_id"] == "1" and dm.token == ""
    guild = {**base, "guild_id": GUILD_ID}
    assert decide(**guild) is None
    for mention in (f"<@{BOT_USER_ID}>", f"<@!{BOT_USER_ID}>"):
        turn = decide(**{**guild, "content": f"{mention} hello", "mentioned_ids": [BOT_USER_ID]})
        assert turn is not None and turn.text == "hello" and turn.key == f"discord:{GUILD_ID}:2"
    assert decide(**{**base, "author_is_bot": True}) is None
    assert decide(**{**base, "author_id": BOT_USER_ID}) is None
    assert decide(**{**guild, "content": f"<@{BOT_USER_ID}>", "mentioned_ids": [BOT_USER_ID]}) is None


def _turns(redis_client: redis.Redis, key: str) -> list[dict[str, str]]:
    conv = redis_client.get(KEYS.conversation_key("discord", key))
    if conv is None:
        return []
    return [redis_client.hgetall(k) for k in redis_client.scan_iter(KEYS.turn_prefix(str(conv)) + "*")
            if not k.endswith(":tools")]


def test_dms_and_mentions_become_turns_other_messages_do_not(
        discord_world: tuple[FakeDiscord, FakeGateway, Settings], redis_client: redis.Redis) -> None:
    """A DM is a turn of ``discord:dm:{channel}``; in a guild only a message mentioning the bot is, its
    text without the mention; a message without the mention and a bot's message are ignored. The bot asks
    for the Message Content intent."""
    _, gateway, settings = discord_world
    with bot(settings, gateway):
        assert gateway.intents is not None and gateway.intents & MESSAGE_CONTENT
        dm = gateway.message("hello bot", channel_id=DM_CHANNEL, author_id=USER_ID)
        gateway.message("just chatting", channel_id=GUILD_CHANNEL, author_id=USER_ID, guild_id=GUILD_ID)
        gateway.message(f"<@{BOT_USER_ID}> hi", channel_id=GUILD_CHANNEL, author_id="2200000000000000012",
                        guild_id=GUILD_ID, mentions=(BOT_USER_ID,), bot=True)
        mention = gateway.message(f"<@{BOT_USER_ID}> what is 2+2?", channel_id=GUILD_CHANNEL,
                                  author_id=USER_ID, guild_id=GUILD_ID, mentions=(BOT_USER_ID,))
        wait_until(lambda: _turns(redis_client, f"discord:dm:{DM_CHANNEL}")
                   and _turns(redis_client, f"discord:{GUILD_ID}:{GUILD_CHANNEL}"), timeout_s=10,
                   message="both turns")
    (dm_turn,) = _turns(redis_client, f"discord:dm:{DM_CHANNEL}")
    assert "hello bot" in dm_turn["input"] and dm_turn["idempotency_key"] == f"message:{dm}"
    assert json.loads(dm_turn["metadata"])["message_id"] == dm
    (guild_turn,) = _turns(redis_client, f"discord:{GUILD_ID}:{GUILD_CHANNEL}")
    assert "what is 2+2?" in guild_turn["input"] and BOT_USER_ID not in guild_turn["input"]
    assert json.loads(guild_turn["metadata"])["message_id"] == mention
    assert redis_client.xlen(KEYS.bridge_turns("discord")) == 2


def test_a_messages_attachments_are_an_image_part_and_a_named_file(
        discord_world: tuple[FakeDiscord, FakeGateway, Settings], redis_client: redis.Redis) -> None:
    """A DM with a photo and a pdf, through discord.py's own parsing of MESSAGE_CREATE: the stored turn's
    input holds the photo as an input_image of its URL and names the pdf in the text."""
    _, gateway, settings = discord_world
    photo = "https://cdn.discordapp.com/attachments/1/2/photo.jpg?ex=1"
    attachments = ({"id": "2", "filename": "photo.jpg", "size": 9000, "url": photo, "proxy_url": photo,
                    "content_type": "image/jpeg"},
                   {"id": "3", "filename": "spec.pdf", "size": 9000, "proxy_url": photo,
                    "url": photo.replace("photo.jpg", "s.pdf"), "content_type": "application/pdf"})
    with bot(settings, gateway):
        gateway.message("what is this?", channel_id=DM_CHANNEL, author_id=USER_ID, attachments=attachments)
        wait_until(lambda: _turns(redis_client, f"discord:dm:{DM_CHANNEL}"), timeout_s=10, message="the turn")
    (turn,) = _turns(redis_client, f"discord:dm:{DM_CHANNEL}")
    [message] = json.loads(turn["input"])
    assert message["content"] == [{"type": "input_text", "text": "what is this?\n[attached: spec.pdf]"},
                                  {"type": "input_image", "image_url": photo, "detail": "auto"}]


@pytest.mark.slow
def test_a_dm_is_answered_in_the_channel(discord_world: tuple[FakeDiscord, FakeGateway, Settings],
                                         redis_client: redis.Redis) -> None:
    """End to end with a worker process and the relay: the reply to a DM is a message in its channel that
    answers the user's message and reads as the turn's output."""
    fake, gateway, settings = discord_world
    with workers(settings, 1, concurrency=4), relay(settings), bot(settings, gateway):
        dm = gateway.message("hello bot", channel_id=DM_CHANNEL, author_id=USER_ID)
        wait_until(lambda: [t for t in _turns(redis_client, f"discord:dm:{DM_CHANNEL}")
                            if t.get("status") == "completed"], timeout_s=20, message="the turn")
        (turn,) = _turns(redis_client, f"discord:dm:{DM_CHANNEL}")
        wait_until(lambda: fake.channel_messages(DM_CHANNEL) == [turn["output_text"]], timeout_s=10,
                   message="the reply in the channel")
    assert fake.of("channel")[0].reply_to == dm
