"""One Redis reader per API process fans conversation events out to its event streams and long-polls.

A blocked XREAD holds its connection, so one per listener made Redis clients grow with listeners (and a key
holder opening streams could use up ``maxclients``). Here one reader task holds one connection and runs one
``XREAD BLOCK`` over every stream that has subscribers, reading each from the smallest cursor of its
subscribers; each subscriber has its own cursor and gets, through its own bounded queue, only the entries
after it. A subscriber first catches up on its own with non-blocking XRANGEs on the shared pool, then joins
the hub from the last seq it got: whatever was added in between is after that cursor, so the hub's next read
brings it, and nothing is missed or repeated.

One XREAD may name any number of streams on a single Redis. On Redis Cluster it may only name keys of one
slot, and each conversation's stream has its own: there the hub polls with one XREAD per slot instead
(``parley.api.fanout_readers``), chosen by the pool's type.
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_right
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import cast

import redis.asyncio

from parley.worker.events.log import LoggedEvent, parse_entry, read_after
from parley.worker.log import get_logger
from parley.worker.store.connections import is_cluster
from parley.worker.store.keys import Keys

from .fanout_readers import CLIENT_NAME as CLIENT_NAME  # the reader connection's name, which tests look for
from .fanout_readers import POLL_MS, BlockingReader, SlotReader, StreamReader

log = get_logger(__name__)

BLOCK_MS = 250
"""How long one XREAD blocks. A blocked XREAD cannot be changed, so a stream that gets its first subscriber
meanwhile is read from the next round on: this bounds the wait for its first live event."""
QUEUE_SIZE = 256
"""Events waiting for one subscriber at most; past this it leaves the hub and catches up on its own."""
READ_SLOTS = 4
"""Reads on the shared pool that listeners make as they start (existence checks, catch-up XRANGEs) in flight
at once: a burst of new listeners borrows this many pool connections, not one each, and keeps them idle."""
RETRY_MIN_S, RETRY_MAX_S = 0.1, 5.0


def read_positions(cursors: Mapping[str, Iterable[int]]) -> dict[str, int]:
    """Where to read each stream from: the smallest cursor of its subscribers; streams without any are left
    out."""
    positions: dict[str, int] = {}
    for stream, seqs in cursors.items():
        if (smallest := min(seqs, default=None)) is not None:
            positions[stream] = smallest
    return positions


def share(seqs: Sequence[int], *, read_from: int, cursor: int, room: int) -> tuple[int, int]:
    """Which entries of a batch (ascending ``seqs``, everything stored after ``read_from`` up to its last) go
    to a subscriber at ``cursor`` with ``room`` free places in its queue: ``seqs[start:stop]``.
    ``stop < len(seqs)`` means it could not take all it is owed.

    A subscriber behind ``read_from`` joined after the read was sent: the batch may lack entries it needs, so
    it gets none of it, and the next round reads from its cursor."""
    if cursor < read_from:
        return len(seqs), len(seqs)
    start = bisect_right(seqs, cursor)
    return start, min(len(seqs), start + max(0, room))


def next_delay(delay_s: float) -> float:
    return min(RETRY_MAX_S, delay_s * 2)


class Subscription:
    """One listener's view of one conversation's stream, from ``after_seq`` on."""

    def __init__(self, hub: Hub, stream: str, *, after_seq: int, queue_size: int) -> None:
        self.hub = hub
        self.stream = stream
        self.cursor = after_seq
        """The last seq handed over: queued by the hub while attached, yielded by the catch-up while not."""
        self.queue: asyncio.Queue[LoggedEvent] = asyncio.Queue(maxsize=queue_size)
        self.attached = False
        self.closed = False

    async def events(self, *, idle_s: float) -> AsyncIterator[LoggedEvent | None]:
        """Every event after the cursor, stored ones first, then live ones as they come; ``None`` whenever
        ``idle_s`` passes with nothing new (a chance to ping or to give up)."""
        while True:
            # Not attached (new, or left the hub when its queue was full): once what was queued is out,
            # catch up from the cursor and join again. Nothing awaits between the last, empty read and
            # attaching, so the hub's next round reads on from exactly there.
            if not self.attached and self.queue.empty() and not self.closed:
                async for event in self._catch_up():
                    yield event
                self.hub.attach(self)
            try:
                async with asyncio.timeout(idle_s):
                    event = await self.queue.get()
            except TimeoutError:
                yield None
                continue
            yield event

    async def _catch_up(self) -> AsyncIterator[LoggedEvent]:
        while True:
            async with self.hub.read_slots:
                batch = await read_after(self.hub.pool, self.stream, after_seq=self.cursor)
            if not batch:
                return
            for event in batch:
                self.cursor = event.seq
                yield event

    def close(self) -> None:
        self.closed = True
        self.hub.detach(self)


class Hub:
    """The reader task, its connection, and the subscribers of each stream. One event loop: no locks."""

    def __init__(self, redis_url: str, pool: redis.asyncio.Redis, keys: Keys, *, block_ms: int = BLOCK_MS,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.redis_url = redis_url
        self.pool = pool
        self.keys = keys
        self.block_ms = block_ms
        self.queue_size = queue_size
        self.read_slots = asyncio.Semaphore(READ_SLOTS)
        self.streams: dict[str, set[Subscription]] = {}
        self._wanted = asyncio.Event()
        self._reader: StreamReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def subscribe(self, conversation_id: str, *, after_seq: int) -> Subscription:
        """A subscription that joins the hub once its owner starts reading it (after catching up)."""
        return Subscription(self, self.keys.events(conversation_id), after_seq=after_seq,
                            queue_size=self.queue_size)

    def attach(self, sub: Subscription) -> None:
        sub.attached = True
        self.streams.setdefault(sub.stream, set()).add(sub)
        self._wanted.set()

    def detach(self, sub: Subscription) -> None:
        sub.attached = False
        subs = self.streams.get(sub.stream)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.streams[sub.stream]

    @property
    def subscribers(self) -> int:
        return sum(len(subs) for subs in self.streams.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="parley-fanout")

    async def stop(self) -> None:
        # The flag too, not only cancel(): a cancel that arrived during a redis-py read was seen to get lost
        # (the task went on, found no subscribers and waited for one forever, so stopping hung).
        self._stopping = True
        self._wanted.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_reader()

    async def _run(self) -> None:
        delay_s = RETRY_MIN_S
        while not self._stopping:
            positions = read_positions({s: (sub.cursor for sub in subs) for s, subs in self.streams.items()})
            if not positions:
                self._wanted.clear()
                await self._wanted.wait()
                continue
            try:
                await self._read_once(positions)
            except Exception as exc:  # noqa: BLE001 - the hub outlives any failure; subscribers keep cursors
                if self._stopping:
                    return
                # Redis down, the connection killed, a timeout: start over on a new connection after a pause.
                # Subscribers wait meanwhile (getting None to ping with) and get the events once it is back.
                log.warning("fanout_read_failed", error=repr(exc), retry_in_s=delay_s)
                await self._drop_reader()
                await asyncio.sleep(delay_s)
                delay_s = next_delay(delay_s)
                continue
            delay_s = RETRY_MIN_S

    def _new_reader(self) -> StreamReader:
        if is_cluster(self.pool):
            # Polling there: a block time shorter than the cluster poll (a relay's) shortens the poll too.
            cluster = cast(redis.asyncio.RedisCluster, self.pool)
            return SlotReader(cluster, poll_ms=min(self.block_ms, POLL_MS))
        return BlockingReader(self.redis_url, block_ms=self.block_ms)

    async def _read_once(self, positions: dict[str, int]) -> None:
        if self._reader is None:
            self._reader = self._new_reader()
        for stream, entries in await self._reader.read(positions):
            self.dispatch(stream, [parse_entry(id_, fields) for id_, fields in entries],
                          read_from=positions[stream])

    def dispatch(self, stream: str, events: Sequence[LoggedEvent], *, read_from: int) -> None:
        """Queue to each subscriber of ``stream`` the events after its cursor. One whose queue cannot take
        them all (a client that does not read) leaves the hub instead of holding memory for it: it keeps what
        fit, then catches up by itself from its cursor (``Subscription.events``); the others never wait."""
        seqs = [event.seq for event in events]
        for sub in list(self.streams.get(stream, ())):
            start, stop = share(seqs, read_from=read_from, cursor=sub.cursor,
                                room=sub.queue.maxsize - sub.queue.qsize())
            for event in events[start:stop]:
                sub.queue.put_nowait(event)
            if stop > start:
                sub.cursor = seqs[stop - 1]
            if stop < len(seqs):
                self.detach(sub)

    async def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                await reader.close()
            except Exception:  # noqa: BLE001, S110 - it is being thrown away; a broken one may fail to close
                pass
