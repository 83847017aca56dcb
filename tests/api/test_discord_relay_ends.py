"""How the Discord relay ends a reply that has no ordinary output, on a real Redis against the fake Discord,
with the turn's events written as a worker writes them: a failed turn's notice, the note of a turn answered in
the next reply, the visible notice (then the channel message) of a turn that outlives its token, and the
"still working" notice while a turn waits to be retried."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from conftest import wait_until
from discord_fake import BOT_TOKEN, FakeDiscord, fake_app
from discord_support import APPLICATION_ID, CHANNEL_ID, relay
from pydantic import SecretStr

from parley.api.bridges.discord.render import retrying_notice
from parley.worker.local.background import BackgroundServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

KEYS = Keys()
CONV = "conv_discord_ends"
TOKEN = "aW50ZXJhY3Rpb24:ends-token"


@pytest.fixture(name="fake")
def _fake() -> Iterator[tuple[FakeDiscord, str]]:
    fake = FakeDiscord(tokens={TOKEN})
    with BackgroundServer(fake_app(fake)) as server:
        yield fake, server.url


def _bridge(settings: Settings, fake_url: str) -> Settings:
    return settings.model_copy(update={"discord_api_url": fake_url, "discord_application_id": APPLICATION_ID,
                                       "discord_bot_token": SecretStr(BOT_TOKEN)})


class Turn:
    """A turn as the inbound side leaves it (record metadata, token, announcement) and its events."""

    def __init__(self, client: redis.Redis, turn_id: str, *, token_ttl_s: int = 900,
                 message_id: str | None = None) -> None:
        self.client, self.id, self.seq = client, turn_id, 0
        where = {"message_id": message_id} if message_id else {}
        client.hset(KEYS.turn(CONV, turn_id), "metadata", json.dumps(
            {"application_id": APPLICATION_ID, "channel_id": CHANNEL_ID, **where}))
        if message_id is None:  # a slash command's; a gateway message has none
            client.set(KEYS.discord_interaction_token(CONV, turn_id), TOKEN, ex=token_ttl_s)
        client.xadd(KEYS.bridge_turns("discord"), {"turn_id": turn_id, "conversation_id": CONV})

    def event(self, type_: str, **fields: object) -> None:
        self.seq = int(self.client.incr(KEYS.seq(CONV)))
        body = {"id": f"{self.id}.{self.seq}", "type": type_, "conversation_id": CONV, "turn_id": self.id,
                "seq": self.seq, "created_at": time.time(), **fields}
        self.client.xadd(KEYS.events(CONV), {"data": json.dumps(body)}, id=f"{self.seq}-0")

    def posted(self) -> bool:
        return self.client.hget(KEYS.bridge_posted(CONV, "discord", self.id), "done") == "1"


def test_a_failed_turn_and_a_merged_one_end_with_a_note(settings: Settings, redis_client: redis.Redis,
                                                         fake: tuple[FakeDiscord, str]) -> None:
    """The failed turn's reply keeps what was written and says it failed; the merged one's deferred reply
    says it is answered in the next reply: neither is left "thinking"."""
    discord, url = fake
    failed, merged = Turn(redis_client, "turn_a"), Turn(redis_client, "turn_b")
    failed.event("turn.started", attempt=1)
    failed.event("response.delta", delta="Partial answer")
    failed.event("turn.failed", error={"type": "upstream_error", "message": "the model is overloaded"})
    merged.event("turn.merged", into="turn_c", answered_by="turn_c")
    with relay(_bridge(settings, url)):
        wait_until(lambda: failed.posted() and merged.posted(), timeout_s=15, message="both replies ended")
    (shown,) = {c.content for c in discord.of("webhook_original") if c.content and "failed" in c.content}
    assert shown.startswith("Partial answer") and "the model is overloaded" in shown
    assert "(answered in the next reply)" in {c.content for c in discord.of("webhook_original")}


def test_a_turn_outliving_its_token_says_so_then_posts_in_the_channel(
        settings: Settings, redis_client: redis.Redis, fake: tuple[FakeDiscord, str]) -> None:
    """Near the token's end the reply is edited with a notice that the rest follows in the channel; the
    final text then goes there with the bot token (the token can no longer edit anything)."""
    discord, url = fake
    turn = Turn(redis_client, "turn_late", token_ttl_s=32)  # 2 s before the relay's 30 s margin
    turn.event("turn.started", attempt=1)
    turn.event("response.delta", delta="Thinking hard")
    with relay(_bridge(settings, url)):
        wait_until(lambda: discord.of("webhook_original"), timeout_s=10, message="the first edit")
        time.sleep(2.5)
        turn.event("response.delta", delta=" and long")
        wait_until(lambda: any("longer than Discord allows" in (c.content or "")
                               for c in discord.of("webhook_original")), timeout_s=10, message="the notice")
        turn.event("turn.completed", output_text="Thinking hard and long: 42")
        wait_until(turn.posted, timeout_s=10, message="the reply to end")
    assert [c.content for c in discord.of("channel")] == ["Thinking hard and long: 42"]


def test_a_refused_reply_is_given_up_not_retried_forever(settings: Settings, redis_client: redis.Redis,
                                                         fake: tuple[FakeDiscord, str]) -> None:
    """A 403 (the app lost access) is no rate limit: the relay tries once, marks the turn done and
    acknowledges it, so no relay takes it over again."""
    discord, url = fake
    discord.missing_access = True
    turn = Turn(redis_client, "turn_refused")
    turn.event("turn.completed", output_text="Nobody will see this")
    with relay(_bridge(settings, url), claim_idle_ms=200):
        wait_until(turn.posted, timeout_s=10, message="the turn given up")
        time.sleep(0.5)  # past the claim idle time: nothing is taken over again
    assert [c.status for c in discord.of("webhook_original", ok=False)] == [403]
    assert redis_client.xpending(KEYS.bridge_turns("discord"), "relays")["pending"] == 0


def test_a_gateway_turn_is_answered_with_channel_messages(settings: Settings, redis_client: redis.Redis,
                                                          fake: tuple[FakeDiscord, str]) -> None:
    """A turn from a channel message (its id in the metadata, no interaction token) is answered with the bot
    token: a reply to that message, edited as the text is written, continued in further messages past 2,000
    characters, which together are the output."""
    discord, url = fake
    turn = Turn(redis_client, "turn_gateway", message_id="1700000000000000007")
    output = " ".join(f"word{n}" for n in range(600))
    turn.event("turn.started", attempt=1)
    turn.event("response.delta", delta=output[:100])
    with relay(_bridge(settings, url)):
        wait_until(lambda: discord.of("channel"), timeout_s=10, message="the first channel message")
        turn.event("response.delta", delta=output[100:])
        turn.event("turn.completed", output_text=output)
        wait_until(turn.posted, timeout_s=10, message="the reply to end")
    messages = discord.channel_messages(CHANNEL_ID)
    assert "".join(messages) == output and len(messages) == 3
    assert discord.of("channel")[0].reply_to == "1700000000000000007" and discord.of("channel_edit")
    assert not discord.of("webhook_original", ok=False)


def test_a_gateway_reply_tried_again_keeps_its_first_message_and_deletes_the_rest(
        settings: Settings, redis_client: redis.Redis, fake: tuple[FakeDiscord, str]) -> None:
    """A channel reply past 2,000 characters (two messages), then the worker tries again: the continuation
    is deleted with the bot token, the first message (the reply to the user's) is kept and edited, and the
    channel ends with one message, the new attempt's text."""
    discord, url = fake
    turn = Turn(redis_client, "turn_gateway_retried", message_id="1700000000000000008")
    turn.event("turn.started", attempt=1)
    turn.event("response.delta", delta="first " * 420)  # 2,520 characters: two messages
    with relay(_bridge(settings, url)):
        wait_until(lambda: len(discord.of("channel")) == 2, timeout_s=10, message="both messages")
        turn.event("turn.retrying", cause="http_5xx", attempt=1, retry_at=time.time() + 1)
        turn.event("turn.started", attempt=2)
        turn.event("response.delta", delta="The answer")
        turn.event("turn.completed", output_text="The answer")
        wait_until(turn.posted, timeout_s=10, message="the reply to end")
    first, second = (c.message_id for c in discord.of("channel"))
    assert [c.message_id for c in discord.of("channel_delete")] == [second]
    assert discord.channel_messages(CHANNEL_ID) == ["The answer"]
    assert discord.of("channel_edit")[-1].message_id == first


def test_a_retrying_turn_says_it_is_still_working_until_its_text_comes(
        settings: Settings, redis_client: redis.Redis, fake: tuple[FakeDiscord, str]) -> None:
    """``turn.retrying`` before any text: ``@original`` is edited once to a short "still working" notice (a
    second retry does not edit it again), then, no sooner than a second later, to the text, and at the end it
    is the turn's whole output."""
    discord, url = fake
    turn = Turn(redis_client, "turn_retrying")
    turn.event("turn.started", attempt=1)
    turn.event("turn.retrying", cause="rate_limited", attempt=1, retry_at=time.time() + 1)
    with relay(_bridge(settings, url)):
        wait_until(lambda: discord.of("webhook_original"), timeout_s=10, message="the notice")
        turn.event("turn.retrying", cause="http_5xx", attempt=1, retry_at=time.time() + 1)
        time.sleep(0.3)
        turn.event("response.delta", delta="The answer")
        turn.event("response.delta", delta=" is 42.")
        turn.event("turn.completed", output_text="The answer is 42.")
        wait_until(turn.posted, timeout_s=10, message="the reply to end")
    edits = discord.of("webhook_original")
    assert edits[0].content == retrying_notice("rate_limited") and "Still working" in str(edits[0].content)
    assert [e.content for e in edits].count(edits[0].content) == 1
    assert edits[-1].content == "The answer is 42." and discord.reply_of(TOKEN) == ["The answer is 42."]
    assert edits[1].at - edits[0].at > 0.9  # the throttle holds for the notice too


def test_a_retry_after_text_was_shown_replaces_it_with_the_new_attempts_text(
        settings: Settings, redis_client: redis.Redis, fake: tuple[FakeDiscord, str]) -> None:
    """The first attempt showed some text, then the worker retries (its deltas start over): the earlier text
    gives way to the notice, never to an empty edit, and the reply ends as the new attempt's text alone."""
    discord, url = fake
    turn = Turn(redis_client, "turn_restarted")
    turn.event("turn.started", attempt=1)
    turn.event("response.delta", delta="A first try")
    with relay(_bridge(settings, url)):
        wait_until(lambda: discord.of("webhook_original"), timeout_s=10, message="the first text")
        turn.event("turn.retrying", cause="http_5xx", attempt=1, retry_at=time.time() + 1)
        time.sleep(1.2)
        turn.event("response.delta", delta="The answer")
        turn.event("turn.completed", output_text="The answer")
        wait_until(turn.posted, timeout_s=10, message="the reply to end")
    contents = [e.content for e in discord.of("webhook_original")]
    assert contents[0] == "A first try" and retrying_notice("http_5xx") in contents
    assert all(contents) and contents[-1] == "The answer" and discord.reply_of(TOKEN) == ["The answer"]
