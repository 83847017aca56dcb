"""The relay core every bridge shares (api/bridges/relay.py), against a real Redis: each announced turn goes to
one relay, a dead relay's turn is taken over, a turn announced twice is handled once, a turn's events are
followed from the start to its terminal event, and the one run loop every relay shares."""

from __future__ import annotations

import asyncio
import json

import redis
import redis.asyncio
from drain_support import run_async

from parley.api.bridges.announce import announce
from parley.api.bridges.relay import (
    Assignment,
    Posted,
    TurnFeed,
    follow_hub,
    follow_turn,
    next_event,
    serve_feed,
)
from parley.worker.events.models import Event, parse_event
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

KEYS = Keys()


def test_each_turn_goes_to_one_relay_and_a_dead_ones_are_taken_over(settings: Settings,
                                                                    redis_client: redis.Redis) -> None:
    """Two relays in one group share the announced turns without overlap; the turns one took and never
    acknowledged go to the other once idle, marked reclaimed; acknowledged ones never come back."""
    async def go(client: redis.asyncio.Redis) -> None:
        a = TurnFeed(client, KEYS, "test", consumer="a", claim_idle_ms=200)
        b = TurnFeed(client, KEYS, "test", consumer="b", claim_idle_ms=200)
        await a.ensure_group()
        await b.ensure_group()  # a second create is no error
        for n in range(4):
            await announce(client, KEYS, "test", turn_id=f"t{n}", conversation_id="conv_x")
        got_a = await a.next(count=2, block_ms=10)
        got_b = await b.next(count=10, block_ms=10)
        assert {x.turn_id for x in got_a} | {x.turn_id for x in got_b} == {"t0", "t1", "t2", "t3"}
        assert not {x.turn_id for x in got_a} & {x.turn_id for x in got_b}
        for x in got_b:
            await b.ack(x)
        assert await b.next(block_ms=10) == []  # a's are not idle yet
        await a.touch(got_a)  # still working: the idle clock starts again
        await asyncio.sleep(0.25)
        taken = await b.next(block_ms=10)  # a died: its two come to b
        assert {x.turn_id for x in taken} == {x.turn_id for x in got_a} and all(x.reclaimed for x in taken)

    run_async(settings, go)


def test_a_turn_announced_twice_is_handled_once(settings: Settings, redis_client: redis.Redis) -> None:
    """The first relay to claim a turn owns it; a second fresh entry of it does not; a relay taking over the
    dead owner's entry does, and what the first one posted is there for it."""
    async def go(client: redis.asyncio.Redis) -> None:
        turn = Assignment(entry_id="1-0", turn_id="t1", conversation_id="conv_x")
        first = Posted(client, KEYS, "test", turn, ttl_s=60)
        assert await first.claim("a", reclaimed=False)
        await first.set(message_ts="123.4", sent_chars=10)
        assert not await Posted(client, KEYS, "test", turn, ttl_s=60).claim("b", reclaimed=False)
        takeover = Posted(client, KEYS, "test", turn, ttl_s=60)
        assert await takeover.claim("b", reclaimed=True)
        assert await takeover.get() == {"owner": "b", "message_ts": "123.4", "sent_chars": "10"}

    run_async(settings, go)


def test_follow_turn_reads_from_the_start_to_the_terminal_event(settings: Settings,
                                                                redis_client: redis.Redis) -> None:
    """Only the turn's own events, oldest first, including those written before the relay looked, and the
    iteration ends with its terminal event even while other turns' events go on."""
    stream = KEYS.events("conv_x")

    def add(seq: int, type_: str, turn: str, **fields: object) -> None:
        body = {"id": f"{turn}.{seq}", "type": type_, "conversation_id": "conv_x", "turn_id": turn,
                "seq": seq, "created_at": 1.0, **fields}
        redis_client.xadd(stream, {"data": json.dumps(body)}, id=f"{seq}-0")

    add(1, "turn.queued", "t1")
    add(2, "turn.queued", "t2")
    add(3, "turn.started", "t1", attempt=1)
    add(4, "response.delta", "t1", delta="Hel")

    async def go(client: redis.asyncio.Redis) -> list[str]:
        seen: list[str] = []

        async def later() -> None:
            await asyncio.sleep(0.1)
            add(5, "response.delta", "t1", delta="lo")
            add(6, "turn.completed", "t1", output_text="Hello")
            add(7, "turn.started", "t2", attempt=1)

        writer = asyncio.create_task(later())
        hub = follow_hub(settings.redis_url_required, client, KEYS)
        await hub.start()
        try:
            async for event in follow_turn(hub, Assignment("1-0", "t1", "conv_x")):
                seen.append(event.type)
        finally:
            await hub.stop()
        await writer
        return seen

    assert run_async(settings, go) == ["turn.queued", "turn.started", "response.delta", "response.delta",
                                       "turn.completed"]


def test_follow_turn_ends_from_the_record_when_the_terminal_event_was_trimmed(
        settings: Settings, redis_client: redis.Redis) -> None:
    """A late relay whose turn's terminal event is no longer in the capped stream still gets one, rebuilt from
    the turn's record (same id as the real one); a turn whose record is gone ends as cancelled."""
    redis_client.hset(KEYS.turn("conv_x", "t9"), mapping={
        "status": "completed", "input": json.dumps("hi"), "output_text": "Hello", "created_at": "1.0"})

    async def go(client: redis.asyncio.Redis) -> list[tuple[str, str]]:
        got = []
        hub = follow_hub(settings.redis_url_required, client, KEYS)
        await hub.start()
        try:
            for turn in ("t9", "t_gone"):
                async for event in follow_turn(hub, Assignment("1-0", turn, "conv_x"), idle_s=0.05):
                    got.append((event.type, event.id))
        finally:
            await hub.stop()
        return got

    assert run_async(settings, go) == [("turn.completed", "t9.completed"), ("turn.cancelled", "t_gone.cancelled")]


def test_the_run_loop_acknowledges_a_turn_announced_again_while_it_is_handled(
        settings: Settings, redis_client: redis.Redis) -> None:
    """``serve_feed`` hands each turn to its handler once: a second announcement of a turn the relay is
    still handling is only acknowledged (the record's owner is this relay, so nothing else would stop a
    second reply); a failing handler leaves its entry pending; stopping cancels the unfinished handler."""
    async def go(client: redis.asyncio.Redis) -> tuple[list[str], int, bool]:
        feed = TurnFeed(client, KEYS, "test", consumer="a")
        hub = follow_hub(settings.redis_url_required, client, KEYS)
        handled: list[str] = []
        release, cancelled = asyncio.Event(), asyncio.Event()

        async def handle(assignment: Assignment) -> None:
            handled.append(assignment.turn_id)
            if assignment.turn_id == "t_fails":
                raise RuntimeError("the platform is down")
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            await feed.ack(assignment)

        stop = asyncio.Event()
        loop = asyncio.create_task(serve_feed(feed, hub, handle, stop, block_ms=20))
        await announce(client, KEYS, "test", turn_id="t1", conversation_id="conv_a")
        await announce(client, KEYS, "test", turn_id="t_fails", conversation_id="conv_b")
        await announce(client, KEYS, "test", turn_id="t_slow", conversation_id="conv_c")
        await asyncio.sleep(0.3)
        await announce(client, KEYS, "test", turn_id="t1", conversation_id="conv_a")  # a platform retry
        await asyncio.sleep(0.3)
        release.set()  # t1 and t_slow finish; a turn announced after this waits again
        await asyncio.sleep(0.2)
        release.clear()
        await announce(client, KEYS, "test", turn_id="t_held", conversation_id="conv_d")
        await asyncio.sleep(0.3)
        stop.set()
        await loop
        pending = (await client.xpending(feed.stream, "relays"))["pending"]
        return handled, pending, cancelled.is_set()

    handled, pending, cancelled = run_async(settings, go)
    assert sorted(handled) == ["t1", "t_fails", "t_held", "t_slow"]
    # Pending: t_fails (failed) and t_held (stopped), for a takeover; the second entry of t1 was acked.
    assert pending == 2 and cancelled


def test_a_stopped_relays_wait_for_the_next_event_is_cancelled_even_as_one_arrives() -> None:
    """A relay's turn task waiting for its next event and cancelled (the relay stops) just as an event comes
    is cancelled, and the event stays queued; ``asyncio.wait_for`` on Python 3.11 returned the event instead,
    so the stopped relay went on with the turn to its end. A quiet wait ends with None at its timeout."""
    event: Event = parse_event(json.dumps({"id": "t1.1", "type": "response.delta", "turn_id": "t1", "seq": 1,
                                           "conversation_id": "conv_x", "created_at": 1.0, "delta": "Hi"}))

    async def go() -> tuple[bool, int, Event | None]:
        events: asyncio.Queue[Event] = asyncio.Queue()
        waiting = asyncio.create_task(next_event(events, 5.0))
        await asyncio.sleep(0)  # it waits on the queue
        events.put_nowait(event)
        waiting.cancel()  # in the same turn of the loop as the event
        await asyncio.gather(waiting, return_exceptions=True)
        quiet = await next_event(asyncio.Queue(), 0.01)
        return waiting.cancelled(), events.qsize(), quiet

    assert asyncio.run(go()) == (True, 1, None)
