"""The fan-out hub (``parley.api.fanout``): which entries go to whom (pure, no Redis), then the hub against a
real Redis with events published by the ingress' own script: a subscriber joining while events flow misses
none, a stuck one holds up nobody and still gets everything later, and the reader outlives a killed
connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis
import redis.asyncio

from parley.api.fanout import CLIENT_NAME, Hub, Subscription, next_delay, read_positions, share
from parley.worker.events.log import LoggedEvent
from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress
from parley.worker.store.keys import Keys

CONV = "conv_fanout"


def _event(seq: int) -> LoggedEvent:
    return LoggedEvent(seq=seq, type="turn.queued", turn_id=f"t{seq}", payload="{}")


class TestPure:
    def test_each_stream_is_read_from_its_smallest_cursor(self) -> None:
        """The hub reads a stream from the cursor of its furthest-behind subscriber, so each gets what it is
        owed; a stream nobody listens to is not read."""
        assert read_positions({"a": [7, 3, 9], "b": [0], "c": []}) == {"a": 3, "b": 0}

    @pytest.mark.parametrize(("cursor", "room", "expected"), [
        (4, 10, (0, 3)),   # at the read position: all of it
        (5, 10, (1, 3)),   # in the middle: only what comes after its cursor
        (9, 10, (3, 3)),   # past it: nothing, and nothing owed
        (4, 2, (0, 2)),    # a queue with room for two: two, and the rest is owed
        (4, 0, (0, 0)),    # a full queue
        (3, 10, (3, 3)),   # behind the read position (joined after it was sent): nothing from this batch
    ])
    def test_share_gives_only_entries_after_the_cursor_and_within_room(
            self, cursor: int, room: int, expected: tuple[int, int]) -> None:
        """Of a batch read from seq 4 holding seqs 5, 7, 9, a subscriber gets the ones after its cursor, as
        many as fit; one behind the read position gets none, or it would skip seq 4 if that was stored."""
        assert share([5, 7, 9], read_from=4, cursor=cursor, room=room) == expected

    def test_retry_delay_doubles_up_to_its_cap(self) -> None:
        """Reader retries back off 0.1, 0.2, ... s, never past 5 s."""
        delays = [0.1]
        for _ in range(8):
            delays.append(next_delay(delays[-1]))
        assert delays[:3] == [0.1, 0.2, 0.4] and max(delays) == 5.0

    def test_dispatch_queues_each_subscriber_its_own_entries_and_lets_a_full_one_go(self) -> None:
        """Subscribers of one stream at cursors 0, 2 and 4 get seqs 1-4, 3-4 and nothing; one whose queue
        holds two leaves the hub with the two that fit, its cursor on the last of them, to catch up itself."""
        hub = Hub("redis://127.0.0.1:1", redis.asyncio.Redis(), Keys())  # never connects: no read here
        subs = [Subscription(hub, "s", after_seq=seq, queue_size=10) for seq in (0, 2, 4)]
        small = Subscription(hub, "s", after_seq=0, queue_size=2)
        other = Subscription(hub, "t", after_seq=0, queue_size=10)
        for sub in [*subs, small, other]:
            hub.attach(sub)
        hub.dispatch("s", [_event(seq) for seq in (1, 2, 3, 4)], read_from=0)
        got = [[sub.queue.get_nowait().seq for _ in range(sub.queue.qsize())] for sub in subs]
        assert got == [[1, 2, 3, 4], [3, 4], []]
        assert [sub.cursor for sub in subs] == [4, 4, 4]
        assert small.queue.qsize() == 2 and small.cursor == 2 and not small.attached
        assert hub.streams["s"] == set(subs) and other.queue.empty()
        hub.dispatch("s", [_event(seq) for seq in (3, 4, 5)], read_from=2)  # a re-read repeats nothing
        assert [sub.queue.get_nowait().seq for sub in subs] == [5, 5, 5]
        late = Subscription(hub, "s", after_seq=1, queue_size=10)  # joined after the read from 5 was sent
        hub.attach(late)
        hub.dispatch("s", [_event(seq) for seq in (6, 7)], read_from=5)
        assert late.queue.empty() and late.attached and late.cursor == 1  # the next round reads from 1


def _named(redis_client: redis.Redis) -> int:
    return sum(1 for c in redis_client.client_list() if c.get("name") == CLIENT_NAME)


async def _with_hub(settings: Settings, body: Callable[[Hub, Ingress], Awaitable[None]],
                    **hub_args: int) -> None:
    pool = redis.asyncio.Redis.from_url(settings.redis_url_required, decode_responses=True)
    ingress = Ingress(pool, settings)
    await ingress.register_conversation(CONV, created_at=1, metadata={}, key=None)
    hub = Hub(settings.redis_url_required, pool, ingress.keys, **hub_args)
    await hub.start()
    try:
        await body(hub, ingress)
    finally:
        await hub.stop()
        await pool.aclose()


async def _publish(ingress: Ingress, count: int, pause_s: float = 0.0) -> None:
    """``count`` real ``turn.queued`` events, each from the ingress' enqueue script."""
    for i in range(count):
        await ingress.enqueue(conversation_id=CONV, input=f"m{i}", model=None, instructions=None, metadata={},
                              idempotency_key=None)
        if pause_s:
            await asyncio.sleep(pause_s)


async def _read_until(events: AsyncIterator[LoggedEvent | None], last: int,
                      timeout_s: float = 15) -> list[int]:
    seqs: list[int] = []
    async with asyncio.timeout(timeout_s):
        async for event in events:
            if event is not None:
                seqs.append(event.seq)
                if event.seq >= last:
                    return seqs
    return seqs


@pytest.fixture(name="roomy")
def _roomy(settings: Settings) -> Settings:
    return settings.model_copy(update={"mailbox_cap": 10_000})


def test_subscribers_joining_while_events_flow_miss_none(roomy: Settings, redis_client: redis.Redis) -> None:
    """Subscribers join at random moments while 300 events are published, some from the start, some from the
    stream's end as they join: each gets every event after its starting point exactly once, in order, and
    they all share the hub's one connection."""
    total = 300

    async def body(hub: Hub, ingress: Ingress) -> None:
        async def join(after_seq: int) -> tuple[int, list[int]]:
            sub = hub.subscribe(CONV, after_seq=after_seq)
            try:
                return after_seq, await _read_until(sub.events(idle_s=0.2), total)
            finally:
                sub.close()

        producer = asyncio.create_task(_publish(ingress, total, pause_s=0.002))
        readers = []
        while not producer.done():
            stored = int(await ingress.client.get(ingress.keys.seq(CONV)) or 0)
            readers.append(asyncio.create_task(join(0)))
            if stored < total:  # (the producer may have just finished)
                readers.append(asyncio.create_task(join(stored)))
            await asyncio.sleep(0.03)
        await producer
        results = await asyncio.gather(*readers)
        assert len(results) > 10
        for after_seq, seqs in results:
            assert seqs == list(range(after_seq + 1, total + 1)), (after_seq, seqs[:10])
        assert _named(redis_client) == 1

    asyncio.run(_with_hub(roomy, body))


def test_a_stuck_subscriber_holds_up_nobody_and_gets_everything_later(roomy: Settings) -> None:
    """A subscriber that stops reading (its client does not drain) fills its small queue and leaves the hub,
    holding no more than that; the others get all 50 events meanwhile. When it reads again it catches up from
    its cursor: all 50, in order, none twice."""
    async def body(hub: Hub, ingress: Ingress) -> None:
        stuck, live = hub.subscribe(CONV, after_seq=0), hub.subscribe(CONV, after_seq=0)
        stuck_events = stuck.events(idle_s=0.1)
        assert await anext(stuck_events) is None  # caught up (nothing yet) and joined; now it stops reading
        started = time.monotonic()
        live_seqs, _ = await asyncio.gather(_read_until(live.events(idle_s=0.2), 50), _publish(ingress, 50))
        assert live_seqs == list(range(1, 51)) and time.monotonic() - started < 10
        assert not stuck.attached and stuck.queue.qsize() == 8  # out of the hub, its queue at the cap
        assert hub.streams[stuck.stream] == {live}
        assert await _read_until(stuck_events, 50) == list(range(1, 51))
        assert await anext(stuck_events) is None and stuck.attached  # caught up, it joined again
        live.close()
        stuck.close()
        assert hub.subscribers == 0

    asyncio.run(_with_hub(roomy, body, queue_size=8))


def test_the_hub_survives_a_killed_connection(roomy: Settings, redis_client: redis.Redis) -> None:
    """``CLIENT KILL`` of the hub's reader connection: events published right after still reach the
    subscriber, in order, over one new reader connection."""
    async def body(hub: Hub, ingress: Ingress) -> None:
        sub = hub.subscribe(CONV, after_seq=0)
        events = sub.events(idle_s=0.3)
        assert await anext(events) is None  # caught up (nothing yet), joined; the hub has read for it since
        await _publish(ingress, 1)
        assert await _read_until(events, 1) == [1]
        killed = [c["id"] for c in redis_client.client_list() if c.get("name") == CLIENT_NAME]
        assert len(killed) == 1
        redis_client.client_kill_filter(_id=killed[0])
        await _publish(ingress, 5)
        assert await _read_until(events, 6) == [2, 3, 4, 5, 6]
        now = [c["id"] for c in redis_client.client_list() if c.get("name") == CLIENT_NAME]
        assert len(now) == 1 and now != killed
        sub.close()

    asyncio.run(_with_hub(roomy, body))
