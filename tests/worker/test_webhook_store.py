"""The Redis side of webhooks, against a real Redis: targets, the leased retry set, dead letters and replay;
the replies stream gets turn.cancelled; ReplyConsumer's start position and metadata filter."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis
import redis.asyncio

from parley.worker.events.replies import ReplyConsumer
from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress
from parley.worker.store.keys import Keys
from parley.worker.webhooks.store import GROUP, Record, Target, WebhookStore

T = TypeVar("T")
KEYS = Keys()


def run(redis_url: str, make: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
    async def go() -> T:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await make(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def event(turn: str, conv: str = "conv_a", type_: str = "turn.completed", **extra: object) -> str:
    return json.dumps({"id": f"{turn}.completed", "type": type_, "conversation_id": conv, "turn_id": turn,
                       "seq": 2, "created_at": 1.0, "output_text": "hi", **extra})


def test_a_conversation_s_own_webhook_wins_over_the_default(settings: Settings, redis_url: str,
                                                           redis_client: redis.Redis) -> None:
    """Targets: the conversation's URL with its events (all terminal ones if none named), else the server
    default, else none; set_webhook_url(None) falls back to the default."""
    default = Target("https://default.example/hook", frozenset({"turn.completed"}))

    async def scenario(client: redis.asyncio.Redis) -> list[dict[str, Target | None]]:
        ingress = Ingress(client, settings)
        await ingress.register_conversation("conv_a", created_at=1, metadata={}, key=None,
                                            webhook_url="https://a.example/hook",
                                            webhook_events=["turn.failed"])
        await ingress.register_conversation("conv_b", created_at=1, metadata={}, key=None,
                                            webhook_url="https://b.example/hook")
        await ingress.register_conversation("conv_c", created_at=1, metadata={}, key=None)
        store = WebhookStore(client, KEYS)
        first = await store.targets({"conv_a", "conv_b", "conv_c"}, default)
        without_default = await store.targets({"conv_c"}, None)
        assert await ingress.set_webhook_url("conv_a", None)
        assert not await ingress.set_webhook_url("conv_missing", "https://x.example/")
        with pytest.raises(ValueError):
            await ingress.set_webhook_url("conv_b", "ftp://x.example/")
        assert (await ingress.conversation("conv_b") or {})["webhook_url"] == "https://b.example/hook"
        return [first, without_default, await store.targets({"conv_a"}, default)]

    first, without_default, after = run(redis_url, scenario)
    # Giving a conversation a webhook made the dispatchers' group, so its replies wait for a dispatcher.
    assert [g["name"] for g in redis_client.xinfo_groups(KEYS.replies)] == [GROUP]
    assert first["conv_a"] == Target("https://a.example/hook", frozenset({"turn.failed"}))
    assert first["conv_b"] == Target("https://b.example/hook",
                                     frozenset({"turn.completed", "turn.failed", "turn.cancelled",
                                                "turn.merged", "turn.superseded", "turn.interrupted"}))
    assert first["conv_c"] == default and without_default["conv_c"] is None and after["conv_a"] == default


def test_a_due_retry_is_taken_by_one_dispatcher_and_comes_back_when_its_lease_ends(
        redis_url: str, redis_client: redis.Redis) -> None:
    """Two dispatchers asking at once never both get a delivery; one that dies holding it loses nothing: the
    delivery is due again when the lease runs out, and done() removes it for good."""
    record = Record.of_event(event("turn_1"))

    async def scenario(client: redis.asyncio.Redis) -> tuple[int, int, int, int]:
        store = WebhookStore(client, KEYS)
        await store.schedule(record, time.time() - 1)
        taken = await asyncio.gather(*(store.claim_due(now=time.time(), lease_s=0.3, count=10)
                                       for _ in range(5)))
        held = await store.claim_due(now=time.time(), lease_s=0.3, count=10)
        await asyncio.sleep(0.4)
        again = await store.claim_due(now=time.time(), lease_s=30, count=10)
        await store.done(again[0])
        gone = await store.claim_due(now=time.time() + 100, lease_s=30, count=10)
        return sum(len(t) for t in taken), len(held), len(again), len(gone)

    assert run(redis_url, scenario) == (1, 0, 1, 0)
    assert redis_client.hlen(KEYS.webhook_deliveries) == 0


def test_dead_letters_list_replay_and_drop(redis_url: str, redis_client: redis.Redis) -> None:
    """A dead-lettered delivery is listed with its last error; replay puts it back, due now with a fresh
    budget; drop forgets it."""
    failed = Record.of_event(event("turn_2")).failed("5xx: 503", url="https://x.example/", now=5.0)

    async def scenario(client: redis.asyncio.Redis) -> tuple[list[str], Record | None, list[Record], bool]:
        store = WebhookStore(client, KEYS)
        await store.dead_letter(failed)
        listed = [r.last_error for r, _ in await store.dead_letters()]
        shown = await store.dead_letter_of(failed.id)
        assert shown is not None
        await store.replay(shown)
        due = await store.claim_due(now=time.time() + 0.01, lease_s=30, count=10)
        await store.dead_letter(due[0])
        await store.drop(due[0])
        return listed, shown, due, await store.dead_letter_of(failed.id) is None

    listed, shown, due, dropped = run(redis_url, scenario)
    assert listed == ["5xx: 503"] and shown == failed
    assert [(r.id, r.failures, r.first_at) for r in due] == [(failed.id, 0, 0.0)] and dropped
    assert redis_client.hlen(KEYS.webhook_deliveries) == 0


def test_a_cancelled_turn_reaches_the_replies_stream(settings: Settings, redis_url: str,
                                                     redis_client: redis.Redis) -> None:
    """turn.cancelled is terminal like turn.completed: it is relayed to the global replies stream at once,
    for consumer groups and webhooks."""

    async def scenario(client: redis.asyncio.Redis) -> str:
        ingress = Ingress(client, settings)
        await ingress.register_conversation("conv_c", created_at=1, metadata={}, key=None)
        accepted = await ingress.enqueue(conversation_id="conv_c", input="hi", model=None, instructions=None,
                                         metadata={"bot": "web"}, idempotency_key=None)
        turn = await ingress.get_turn(accepted.turn_id)
        assert turn is not None and await ingress.cancel(turn)
        return accepted.turn_id

    turn_id = run(redis_url, scenario)
    replies = [json.loads(fields["data"]) for _, fields in redis_client.xrange(KEYS.replies)]
    assert [(r["type"], r["turn_id"], r["metadata"]) for r in replies] == [("turn.cancelled", turn_id,
                                                                            {"bot": "web"})]
    assert redis_client.llen(KEYS.outbox("conv_c")) == 0


def test_reply_consumer_starts_at_the_newest_entry_unless_told(redis_client: redis.Redis) -> None:
    """A new group gets only replies added after it was made; ``start="0"`` replays the history; an existing
    group keeps its position whatever ``start`` a later consumer passes."""
    redis_client.xadd(KEYS.replies, {"data": event("old")})
    fresh = ReplyConsumer(redis_client, group="fresh", name="a", min_idle_ms=60_000)
    history = ReplyConsumer(redis_client, group="history", name="a", min_idle_ms=60_000, start="0")
    redis_client.xadd(KEYS.replies, {"data": event("new")})
    assert [d.event.turn_id for d in fresh.read(block_ms=10)] == ["new"]
    assert [d.event.turn_id for d in history.read(block_ms=10)] == ["old", "new"]
    late = ReplyConsumer(redis_client, group="fresh", name="b", min_idle_ms=60_000, start="0")
    assert late.read(block_ms=10) == []


def test_reply_consumer_metadata_filter_acks_and_skips_the_rest(redis_client: redis.Redis) -> None:
    """With ``metadata``, only replies whose metadata has those pairs are delivered; the others are acked
    (never pending, never redelivered) and skipped."""
    web = ReplyConsumer(redis_client, group="web-bot", name="a", min_idle_ms=0, metadata={"bot": "web"})
    redis_client.xadd(KEYS.replies, {"data": event("t1", metadata={"bot": "web", "ch": "1"})})
    redis_client.xadd(KEYS.replies, {"data": event("t2", metadata={"bot": "slack"})})
    redis_client.xadd(KEYS.replies, {"data": event("t3")})
    got = web.read(block_ms=10)
    assert [d.event.turn_id for d in got] == ["t1"]
    assert redis_client.xpending(KEYS.replies, "web-bot")["pending"] == 1
    web.ack(got[0])
    assert web.read(block_ms=10) == [] and redis_client.xpending(KEYS.replies, "web-bot")["pending"] == 0


def test_the_dispatchers_group_starts_at_the_newest_entry(redis_url: str, redis_client: redis.Redis) -> None:
    """Turning webhooks on does not POST the replies stream's history; what comes after is read."""
    redis_client.xadd(KEYS.replies, {"data": event("before")})

    async def scenario(client: redis.asyncio.Redis) -> list[str]:
        store = WebhookStore(client, KEYS)
        await store.ensure_group()
        await client.xadd(KEYS.replies, {"data": event("after")})
        await client.xadd(KEYS.replies, {"data": "not json"})
        return [e.record.turn_id for e in await store.read("d1", count=10, block_ms=10, min_idle_ms=60_000)]

    assert run(redis_url, scenario) == ["after"]
    assert redis_client.xpending(KEYS.replies, GROUP)["pending"] == 1  # the malformed entry was acked


def test_settings_refuse_a_bad_default_webhook() -> None:
    """PARLEY_WEBHOOK_URL is checked like a conversation's; the reclaim time must exceed the POST timeout."""
    with pytest.raises(ValueError):
        Settings(_env_file=None, webhook_url="ftp://example.com/")
    with pytest.raises(ValueError):
        Settings(_env_file=None, webhook_timeout_s=10, webhook_claim_idle_ms=5000)
    assert Settings(_env_file=None, webhook_events="turn.completed, turn.failed").webhook_events == [
        "turn.completed", "turn.failed"]
