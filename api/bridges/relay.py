"""What every platform's reply relay shares: its share of the bridge's turns (a consumer group over the
announce stream), each turn's events as they are written, and the record of what it has posted.

A relay takes an announced turn, follows the turn's events in its conversation's durable stream from the start
(so a relay that starts late, or takes over a dead one's turn, misses nothing), posts as the platform needs,
and acknowledges the entry once the turn's terminal event is handled. Entries a relay took and never
acknowledged (it died) are claimed by another after ``claim_idle_ms``; what the dead one had posted is in the
turn's record (``Posted``), so the new one continues the same message. A turn announced twice (a platform
retry) is handled once: the first relay to mark it owns it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio
import redis.exceptions

from parley.worker.events.models import TERMINAL_TYPES, Event, TurnCancelled, parse_event, terminal_event_of
from parley.worker.log import get_logger
from parley.worker.messages import Turn
from parley.worker.run.drain import worker_id
from parley.worker.store.keys import Keys

from ..fanout import Hub

log = get_logger(__name__)

GROUP = "relays"
CLAIM_IDLE_MS = 60_000
"""A turn a relay took and has not acknowledged for this long is another relay's: longer than any pause in a
live relay's work on it (a rate-limit wait, a slow platform call)."""


class InOrder:
    """A conversation's turns handled one after another, in the order the relay took them: a turn's task
    first waits for the one before it in its conversation (whatever that one's outcome), so a thread's
    replies are posted in the order of its messages even when later turns are already written by the time
    the relay gets to them (concurrent tasks would race to the platform)."""

    def __init__(self) -> None:
        self._last: dict[str, asyncio.Task[None]] = {}

    def start(self, conversation_id: str,
              work: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        before = self._last.get(conversation_id)

        async def after() -> None:
            if before is not None and not before.done():
                await asyncio.wait({before})  # its exception is its own; a cancel of this one goes through
            await work()

        task = asyncio.create_task(after())
        self._last[conversation_id] = task
        task.add_done_callback(lambda done: self._forget(conversation_id, done))
        return task

    def _forget(self, conversation_id: str, task: asyncio.Task[None]) -> None:
        if self._last.get(conversation_id) is task:
            del self._last[conversation_id]


@dataclass(frozen=True)
class Assignment:
    entry_id: str
    turn_id: str
    conversation_id: str
    reclaimed: bool = False
    """Taken over from a relay that stopped acknowledging it (it died)."""


class TurnFeed:
    """One relay's share of a bridge's announced turns."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, platform: str, *, consumer: str | None = None,
                 claim_idle_ms: int = CLAIM_IDLE_MS) -> None:
        self.client, self.keys, self.platform = client, keys, platform
        self.stream = keys.bridge_turns(platform)
        self.consumer = consumer or worker_id()  # host:pid
        self.claim_idle_ms = claim_idle_ms

    async def ensure_group(self) -> None:
        try:
            # From the start of the stream: turns announced before the first relay ever ran still get replies.
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def next(self, *, block_ms: int = 1000, count: int = 32) -> list[Assignment]:
        """Turns a dead relay left (idle past ``claim_idle_ms``), else new ones (waiting up to
        ``block_ms``)."""
        claimed = await self.client.xautoclaim(self.stream, GROUP, self.consumer, self.claim_idle_ms,
                                               start_id="0-0", count=count)
        entries = list(claimed[1]) if claimed else []
        reclaimed = bool(entries)
        if not entries:
            read = await self.client.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=count,
                                                block=block_ms)
            entries = [entry for _, batch in read or [] for entry in batch]
        return [Assignment(entry_id=id_, turn_id=fields["turn_id"],
                           conversation_id=fields["conversation_id"], reclaimed=reclaimed)
                for id_, fields in cast(list[tuple[str, dict[str, str]]], entries) if fields]

    async def touch(self, assignments: list[Assignment]) -> None:
        """Reset the idle time of entries this relay is still working on (a reply that streams for minutes),
        so no other relay takes them over; call it well within ``claim_idle_ms``."""
        if assignments:
            await self.client.xclaim(self.stream, GROUP, self.consumer, 0, [a.entry_id for a in assignments],
                                     justid=True)

    async def ack(self, assignment: Assignment) -> None:
        await self.client.xack(self.stream, GROUP, assignment.entry_id)


Handler = Callable[[Assignment], Coroutine[Any, Any, None]]


async def serve_feed(feed: TurnFeed, hub: Hub, handle: Handler, stop: asyncio.Event, *,
                     block_ms: int = 200) -> None:
    """A relay's loop until ``stop`` is set: each assignment of ``feed`` handled by ``handle`` in a task of
    its own (a conversation's in order, ``InOrder``), the entries still worked on touched well within the
    claim idle time, a failed task logged and left unacknowledged (it comes back once idle, here or at
    another relay). On the way out the tasks are cancelled (their entries stay pending for a takeover) and
    the hub stopped."""
    await feed.ensure_group()
    await hub.start()
    working: dict[str, tuple[Assignment, asyncio.Task[None]]] = {}
    in_order = InOrder()  # a thread's replies in the order of its messages
    touched = time.monotonic()
    try:
        while not stop.is_set():
            for assignment in await feed.next(block_ms=block_ms):
                if assignment.entry_id in working:
                    continue
                if any(a.turn_id == assignment.turn_id for a, _ in working.values()):
                    # Announced again (a platform retry) while this relay posts it: the record's owner is this
                    # relay, so only this check keeps the turn from being posted twice.
                    await feed.ack(assignment)
                    continue
                task = in_order.start(assignment.conversation_id, lambda a=assignment: handle(a))
                working[assignment.entry_id] = (assignment, task)
            for entry_id, (assignment, task) in list(working.items()):
                if task.done():
                    del working[entry_id]
                    if not task.cancelled() and (exc := task.exception()) is not None:
                        log.warning("relay_turn_failed", platform=feed.platform, turn_id=assignment.turn_id,
                                    error=type(exc).__name__, detail=str(exc)[:200])
            if time.monotonic() - touched > feed.claim_idle_ms / 3000:
                await feed.touch([a for a, _ in working.values()])
                touched = time.monotonic()
    finally:
        for _, task in working.values():
            task.cancel()
        await asyncio.gather(*(task for _, task in working.values()), return_exceptions=True)
        await hub.stop()


class Posted:
    """What a relay posted of one turn's reply (``Keys.bridge_posted``): platform message ids, how much of
    the text went out, whether it is done. Lives as long as the turn's record."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, platform: str, assignment: Assignment, *,
                 ttl_s: int) -> None:
        self.client, self.ttl_s = client, ttl_s
        self.key = keys.bridge_posted(assignment.conversation_id, platform, assignment.turn_id)

    async def get(self) -> dict[str, str]:
        return cast(dict[str, str], await self.client.hgetall(self.key))

    async def set(self, **fields: Any) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, mapping={name: str(value) for name, value in fields.items()})
            pipe.expire(self.key, self.ttl_s)
            await pipe.execute()

    async def claim(self, owner: str, *, reclaimed: bool) -> bool:
        """Whether ``owner`` handles this turn. The first relay to ask owns it; another one gets it only by
        taking over the dead owner's entry (``reclaimed``). A second entry of the same turn (the platform
        retried before its 2xx) finds it owned and is only acknowledged."""
        if await self.client.hsetnx(self.key, "owner", owner):
            await self.client.expire(self.key, self.ttl_s)
            return True
        if reclaimed or await self.client.hget(self.key, "owner") == owner:
            await self.client.hset(self.key, "owner", owner)
            return True
        return False


FOLLOW_BLOCK_MS = 20
"""The hub's XREAD block time in a relay: a turn's stream joins the hub's read at the end of the current
block, so this bounds the wait for the first event of a turn that starts while the relay waits on others
(the relay delay target is 50 ms); an idle relay's reader makes one cheap XREAD per block meanwhile."""


def follow_hub(redis_url: str, client: redis.asyncio.Redis, keys: Keys) -> Hub:
    """The fan-out hub a relay follows its turns through: one reader connection for all of them."""
    return Hub(redis_url, client, keys, block_ms=FOLLOW_BLOCK_MS)


async def follow_turn(hub: Hub, assignment: Assignment, *, after_seq: int = 0,
                      idle_s: float = 1.0) -> AsyncIterator[Event]:
    """The turn's events, oldest first, from its conversation's durable stream, until its terminal event.
    Read through the relay's fan-out hub (``parley.api.fanout``): the stored events first, then each new one
    as the hub's single blocking XREAD brings it, so a relay following many turns holds one connection, not
    one per turn. The stream is capped, so a turn's terminal event may be trimmed before a late relay reads
    it: whenever ``idle_s`` passes with nothing new, the turn's record is read, and an ended turn's terminal
    event is rebuilt from it (same ``id``), as the API's turn stream does."""
    subscription = hub.subscribe(assignment.conversation_id, after_seq=after_seq)
    try:
        async for logged in subscription.events(idle_s=idle_s):
            if logged is None:
                if (final := await _ended(hub.pool, hub.keys, assignment)) is not None:
                    yield final
                    return
                continue
            if logged.turn_id != assignment.turn_id:
                continue
            event = parse_event(logged.payload)
            yield event
            if event.type in TERMINAL_TYPES:
                return
    finally:
        subscription.close()


def starts_over(event: Event) -> bool:
    """Whether the turn's reply is written again from the start after ``event``: the worker waits to try again
    (``turn.retrying``: the next deltas, or the final text, are a new attempt's), or another worker took the
    turn over (``turn.started`` of a later attempt). What a relay showed of the earlier attempt goes, and the
    relay records the event's ``seq`` (``restart_seq`` in the turn's ``Posted`` record): a relay taking the
    turn over reads its events after it, so it never shows the attempts already replaced again (replayed into
    the messages on record they garbled them on Slack and flashed on Discord), and a seq still holds when the
    conversation's capped stream has trimmed them."""
    return event.type == "turn.retrying" or (event.type == "turn.started" and event.attempt > 1)


async def next_event(events: asyncio.Queue[Event], timeout_s: float) -> Event | None:
    """The next event in ``events``, or None after ``timeout_s``. Not ``asyncio.wait_for``: on Python 3.11 it
    swallows a cancellation that comes just as the event does (CPython gh-86296), so a relay being stopped
    went on with a turn to its end instead of leaving it to a takeover (the relay takeover tests' flake)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await events.get()
    except TimeoutError:
        return None


async def _ended(client: redis.asyncio.Redis, keys: Keys, assignment: Assignment) -> Event | None:
    """The turn's terminal event rebuilt from its record, if it has ended; a cancellation when the record and
    its conversation's stream are gone (the conversation deleted, or kept past retention), so the relay lets
    go of it."""
    fields = await client.hgetall(keys.turn(assignment.conversation_id, assignment.turn_id))
    if not fields:
        if await client.exists(keys.events(assignment.conversation_id)):
            return None  # events without a record yet: written by a test, or a record still on its way
        return TurnCancelled(id=f"{assignment.turn_id}.cancelled", type="turn.cancelled",
                             conversation_id=assignment.conversation_id, turn_id=assignment.turn_id, seq=1,
                             created_at=time.time(), reason="conversation_deleted")
    turn, problem = Turn.parse(fields, assignment.conversation_id, assignment.turn_id)
    if problem is not None or not turn.status.terminal:
        return None  # a record that does not parse says nothing about the turn's end
    return terminal_event_of(turn, seq=1)
