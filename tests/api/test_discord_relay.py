"""The Discord relay (api/bridges/discord/relay.py) end to end: a signed slash command into the real API, a
real worker process answering from the emulator, the relay posting to a fake Discord (tests/discord_fake.py):
the deferred reply edited at most once a second until it shows the turn's output, a long reply continued in
follow-ups, a 429 waited out, a restarted relay continuing the same messages (that turn's events written by
the test, so the first relay is stopped mid-turn), an expired token's fallback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from conftest import wait_until
from discord_fake import BOT_TOKEN, FakeDiscord, fake_app
from discord_support import discord_settings, relay, signed_post, slash_command
from nacl.signing import SigningKey
from pydantic import SecretStr
from stack import workers

from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow
KEYS = Keys()


@pytest.fixture(name="fake")
def _fake() -> Iterator[tuple[FakeDiscord, str]]:
    fake = FakeDiscord()
    with BackgroundServer(fake_app(fake)) as server:
        yield fake, server.url


@pytest.fixture(name="key")
def _key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(name="bridge")
def _bridge(settings: Settings, key: SigningKey, fake: tuple[FakeDiscord, str]) -> Settings:
    return discord_settings(settings, key, discord_api_url=fake[1], discord_bot_token=SecretStr(BOT_TOKEN))


@pytest.fixture(name="api")
def _api(bridge: Settings) -> Iterator[str]:
    with BackgroundServer(create_app(bridge)) as server:
        yield server.url


def ask(api: str, key: SigningKey, fake: FakeDiscord, redis_client: redis.Redis, text: str,
        *, valid_token: bool = True) -> tuple[dict[str, object], str, str]:
    """Post a signed /ask; returns its body, and the turn and conversation it became."""
    body = slash_command(text)
    if valid_token:
        fake.tokens.add(str(body["token"]))
    assert signed_post(api, key, body).json() == {"type": 5}
    (_, fields), = redis_client.xrevrange(KEYS.bridge_turns("discord"), count=1)
    return body, fields["turn_id"], fields["conversation_id"]


def output_of(redis_client: redis.Redis, conv: str, turn: str) -> str:
    return str(redis_client.hget(KEYS.turn(conv, turn), "output_text") or "")


def wait_posted(redis_client: redis.Redis, conv: str, turn: str, timeout_s: float = 30) -> None:
    wait_until(lambda: redis_client.hget(KEYS.bridge_posted(conv, "discord", turn), "done") == "1",
               timeout_s=timeout_s, message="the relay to finish the reply")


def test_the_reply_is_edited_in_at_most_once_a_second(bridge: Settings, api: str, key: SigningKey,
                                                      fake: tuple[FakeDiscord, str], emulator: EmulatorServer,
                                                      redis_client: redis.Redis) -> None:
    """A reply written over a few seconds shows up in ``@original`` as it is written (several edits, none
    within ~1 s of the previous), and its last edit is the turn's whole output."""
    discord, _ = fake
    emulator.config.reply_words, emulator.config.delta_interval_ms = 80, 60
    with workers(bridge, 1, concurrency=4), relay(bridge):
        body, turn, conv = ask(api, key, discord, redis_client, "tell me a story")
        wait_posted(redis_client, conv, turn)
    output = output_of(redis_client, conv, turn)
    edits = discord.of("webhook_original")
    assert len(output) > 100 and discord.reply_of(str(body["token"])) == [output]
    assert len(edits) >= 2 and edits[-1].content == output
    gaps = [b.at - a.at for a, b in zip(edits, edits[1:], strict=False)]
    assert min(gaps) > 0.9, gaps
    assert not discord.of("webhook_followup")


def test_a_long_reply_continues_in_follow_ups_and_a_429_is_waited_out(
        bridge: Settings, api: str, key: SigningKey, fake: tuple[FakeDiscord, str], emulator: EmulatorServer,
        redis_client: redis.Redis) -> None:
    """A reply of several thousand characters fills ``@original`` and goes on in follow-up messages of at
    most 2,000 characters, which together are the output; the 429 Discord answers first is waited out."""
    discord, _ = fake
    emulator.config.reply_words = 1200
    discord.throttle_next, discord.retry_after_s = 1, 0.5
    with workers(bridge, 1, concurrency=4), relay(bridge):
        body, turn, conv = ask(api, key, discord, redis_client, "tell me everything")
        wait_posted(redis_client, conv, turn)
    output = output_of(redis_client, conv, turn)
    messages = discord.reply_of(str(body["token"]))
    assert len(output) > 4000 and len(messages) >= 3
    assert "".join(messages) == output and all(len(m) <= 2000 for m in messages)
    (limited,) = [c for c in discord.calls if c.status == 429]
    after = [c for c in discord.calls if c.status == 200 and c.at > limited.at]
    assert after and after[0].at - limited.at >= 0.45


def write_event(redis_client: redis.Redis, conv: str, turn: str, type_: str, **fields: object) -> None:
    """One of the turn's events, written into its conversation's stream as the worker writes it."""
    seq = int(redis_client.incr(KEYS.seq(conv)))
    body = {"id": f"{turn}.{seq}", "type": type_, "conversation_id": conv, "turn_id": turn, "seq": seq,
            "created_at": time.time(), **fields}
    redis_client.xadd(KEYS.events(conv), {"data": json.dumps(body)}, id=f"{seq}-0")


def test_a_restarted_relay_continues_the_same_messages(
        bridge: Settings, api: str, key: SigningKey, fake: tuple[FakeDiscord, str],
        redis_client: redis.Redis) -> None:
    """A relay stopped after its first follow-up, while the turn is unfinished, leaves the turn
    unacknowledged; the relay that takes it over edits the messages already posted (``@original`` and that
    follow-up) and posts only the missing ones: no duplicates, no second reply. The test writes the turn's
    events itself (no worker), so the first relay is stopped before the turn's end on any machine."""
    discord, _ = fake
    output = " ".join(f"word{n}" for n in range(1000))  # about 7,900 characters: 4 messages
    with relay(bridge, consumer="first", claim_idle_ms=300):
        body, turn, conv = ask(api, key, discord, redis_client, "a long one")
        write_event(redis_client, conv, turn, "turn.started", attempt=1)
        write_event(redis_client, conv, turn, "response.delta", delta=output[:2500])  # @original + 1
        # Stopped once the follow-up is on record: a relay killed between Discord's answer to the POST
        # and that write would post it again (the one window the record cannot close).
        wait_until(lambda: redis_client.hget(KEYS.bridge_posted(conv, "discord", turn), "followups"),
                   timeout_s=30, message="a first follow-up on record")
    first_followups = [c.message_id for c in discord.of("webhook_followup")]
    assert len(first_followups) == 1 and len(discord.of("webhook_original")) == 1
    assert redis_client.hget(KEYS.bridge_posted(conv, "discord", turn), "done") is None
    for start in range(2500, len(output), 1500):
        write_event(redis_client, conv, turn, "response.delta", delta=output[start:start + 1500])
    write_event(redis_client, conv, turn, "turn.completed", output_text=output)
    with relay(bridge, consumer="second", claim_idle_ms=300):
        wait_posted(redis_client, conv, turn)
    messages = discord.reply_of(str(body["token"]))
    assert "".join(messages) == output and len(messages) == 4
    followups = [c.message_id for c in discord.of("webhook_followup")]
    assert followups[:1] == first_followups and len(followups) == len(messages) - 1  # none posted twice
    assert first_followups[0] in {c.message_id for c in discord.of("webhook_message")}  # edited by the second
    assert len(discord.of("webhook_original")) >= 2 and not discord.of("channel")
    assert redis_client.hget(KEYS.bridge_posted(conv, "discord", turn), "owner") == "second"


def test_an_expired_token_falls_back_to_a_channel_message(bridge: Settings, api: str, key: SigningKey,
                                                          fake: tuple[FakeDiscord, str],
                                                          redis_client: redis.Redis) -> None:
    """Discord answers 50027 (the interaction token is no longer valid): the reply is posted in the channel
    with the bot token instead of being lost."""
    discord, _ = fake
    with workers(bridge, 1, concurrency=4), relay(bridge):
        _, turn, conv = ask(api, key, discord, redis_client, "too late", valid_token=False)
        wait_posted(redis_client, conv, turn)
    assert [c.status for c in discord.of("webhook_original", ok=False)] == [401]
    (posted,) = discord.of("channel")
    assert posted.content == output_of(redis_client, conv, turn)


def a_long_first_attempt(api: str, key: SigningKey, discord: FakeDiscord,
                         redis_client: redis.Redis) -> tuple[str, str, str, str]:
    """A slash command whose first attempt has written 2,520 characters (``@original`` and one follow-up, on
    record): its token, turn, conversation and ``Posted`` record key."""
    body, turn, conv = ask(api, key, discord, redis_client, "a question")
    record = KEYS.bridge_posted(conv, "discord", turn)
    write_event(redis_client, conv, turn, "turn.started", attempt=1)
    write_event(redis_client, conv, turn, "response.delta", delta="first " * 420)
    wait_until(lambda: redis_client.hget(record, "followups"), timeout_s=30, message="the follow-up")
    return str(body["token"]), turn, conv, record


def test_a_retried_turn_taken_over_shows_only_its_last_attempt(
        bridge: Settings, api: str, key: SigningKey, fake: tuple[FakeDiscord, str],
        redis_client: redis.Redis) -> None:
    """The first attempt writes past 2,000 characters (``@original`` and a follow-up), then the worker tries
    again: the follow-up is deleted (no earlier text is left below the new one) and ``@original`` shows the
    new attempt; the relay is stopped. The relay taking the turn over reads the events from the last
    start-over on record, so no edit shows the earlier text again, and the reply ends as the new attempt's
    text alone."""
    discord, _ = fake
    with relay(bridge, consumer="first", claim_idle_ms=300):
        token, turn, conv, record = a_long_first_attempt(api, key, discord, redis_client)
        write_event(redis_client, conv, turn, "turn.retrying", cause="http_5xx", attempt=1,
                    retry_at=time.time() + 1)
        write_event(redis_client, conv, turn, "turn.started", attempt=2)
        second = int(redis_client.get(KEYS.seq(conv)) or 0)
        write_event(redis_client, conv, turn, "response.delta", delta="The answer")
        wait_until(lambda: discord.reply_of(token) == ["The answer"], timeout_s=30,
                   message="the new attempt shown")
    assert redis_client.hget(record, "restart_seq") == str(second) and len(discord.of("webhook_delete")) == 1
    before = len(discord.calls)
    write_event(redis_client, conv, turn, "response.delta", delta=" is 42.")
    write_event(redis_client, conv, turn, "turn.completed", output_text="The answer is 42.")
    with relay(bridge, consumer="second", claim_idle_ms=300):
        wait_posted(redis_client, conv, turn)
    with discord.lock:
        after = [c for c in discord.calls[before:] if c.status < 300]
    assert {c.route for c in after} == {"webhook_original"}  # no follow-up posted, edited or deleted
    assert all("The answer is 42.".startswith(str(c.content)) for c in after), [c.content for c in after]
    assert discord.reply_of(token) == ["The answer is 42."]


def test_a_follow_up_deleted_before_its_record_was_written_is_posted_anew(
        bridge: Settings, api: str, key: SigningKey, fake: tuple[FakeDiscord, str],
        redis_client: redis.Redis) -> None:
    """A relay killed between deleting an attempt's follow-up and recording it leaves a record that names a
    message which is gone. The relay taking over shows the first attempt again from the record's point, its
    edit of that follow-up is answered 404 (Unknown Message) and the part is posted anew in its place,
    instead of the reply being given up; the start-over then deletes it, and the reply ends as the new
    attempt's text."""
    discord, _ = fake
    with relay(bridge, consumer="first", claim_idle_ms=300):
        token, turn, conv, record = a_long_first_attempt(api, key, discord, redis_client)
    gone = str(redis_client.hget(record, "followups"))
    with discord.lock:  # deleted at Discord, the record not written: the relay died in between
        del discord.messages[gone], discord.owners[gone]
    write_event(redis_client, conv, turn, "turn.retrying", cause="http_5xx", attempt=1, retry_at=time.time())
    write_event(redis_client, conv, turn, "turn.started", attempt=2)
    write_event(redis_client, conv, turn, "response.delta", delta="The answer")
    write_event(redis_client, conv, turn, "turn.completed", output_text="The answer")
    with relay(bridge, consumer="second", claim_idle_ms=300):
        wait_posted(redis_client, conv, turn)
    assert len(discord.of("webhook_followup")) == 2  # the first attempt's, and the one posted anew
    assert discord.reply_of(token) == ["The answer"]
