"""The Redis side of webhook delivery (async): the dispatchers' consumer group on the replies stream, each
conversation's webhook target, the retry set and the dead letters.

A delivery's id is its event's ``id`` (stable, the ``webhook-id`` header), so a repeated stream entry and a
retry of it are one delivery. Every move keeps a delivery somewhere durable: an entry read from the stream
stays pending in the group until it is delivered or written to the retry set (acked only after that write),
and a retry taken by a dispatcher stays in the set under a lease.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis
import redis.asyncio

from ..store import scripts
from ..store.keys import Keys
from .policy import DEFAULT_EVENTS

GROUP = "parley-webhooks"


@dataclass(frozen=True)
class Target:
    url: str
    events: frozenset[str]


@dataclass(frozen=True)
class Record:
    """One delivery as the retry set and the dead letters keep it."""

    id: str
    conversation_id: str
    turn_id: str
    type: str
    payload: str
    """The event JSON exactly as it is POSTed (and signed)."""
    failures: int = 0
    first_at: float = 0.0
    last_error: str = ""
    url: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Record:
        return cls(**json.loads(raw))

    @classmethod
    def of_event(cls, payload: str) -> Record:
        body = json.loads(payload)
        return cls(id=str(body["id"]), conversation_id=str(body["conversation_id"]),
                   turn_id=str(body["turn_id"]), type=str(body["type"]), payload=payload)

    def failed(self, error: str, *, url: str, now: float) -> Record:
        return replace(self, failures=self.failures + 1, first_at=self.first_at or now, last_error=error,
                       url=url)


@dataclass(frozen=True)
class Entry:
    entry_id: str
    record: Record


class WebhookStore:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    # --- the replies stream ---------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        # A new group starts at the newest entry, as ReplyConsumer's do: turning webhooks on must not POST
        # the stream's whole history. Once the group exists, nothing after its position is lost.
        try:
            await self.client.xgroup_create(self.keys.replies, GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, *, count: int, block_ms: int, min_idle_ms: int) -> list[Entry]:
        """Entries a dead dispatcher left pending longer than ``min_idle_ms`` first, then new ones."""
        stream = self.keys.replies
        _, claimed, _ = await self.client.xautoclaim(stream, GROUP, consumer, min_idle_ms, start_id="0-0",
                                                     count=count)
        rows: list[tuple[str, dict[str, str]]] = [(entry_id, fields) for entry_id, fields in claimed
                                                  if fields]
        if not rows:
            batches: Any = await self.client.xreadgroup(GROUP, consumer, {stream: ">"}, count=count,
                                                        block=block_ms)
            rows = [row for _, entries in batches or [] for row in entries]
        out = []
        for entry_id, fields in rows:
            try:
                out.append(Entry(entry_id, Record.of_event(fields["data"])))
            except (KeyError, ValueError, TypeError):
                await self.ack(entry_id)  # not an event: nothing could ever deliver it
        return out

    async def ack(self, *entry_ids: str) -> None:
        if entry_ids:
            await self.client.xack(self.keys.replies, GROUP, *entry_ids)

    # --- targets --------------------------------------------------------------------------------------

    async def targets(self, conversation_ids: set[str], default: Target | None) -> dict[str, Target | None]:
        """Each conversation's webhook: its own, else ``default``; ``None`` when it has neither."""
        convs = sorted(conversation_ids)
        async with self.client.pipeline(transaction=False) as pipe:
            for conv in convs:
                pipe.hmget(self.keys.conversation(conv), ["webhook_url", "webhook_events"])
                pipe.hmget(self.keys.deleted(conv), ["webhook_url", "webhook_events"])
            rows = await pipe.execute()
        out: dict[str, Target | None] = {}
        for conv, live, deleted in zip(convs, rows[0::2], rows[1::2], strict=True):
            # A deleted conversation's webhook still gets the cancellations its deletion caused.
            url, events = live if live[0] else deleted
            if url:
                out[conv] = Target(url, frozenset(json.loads(events)) if events else DEFAULT_EVENTS)
            else:
                out[conv] = default
        return out

    # --- retries --------------------------------------------------------------------------------------

    async def schedule(self, record: Record, due_at: float, *, entry_id: str | None = None) -> None:
        """Keep ``record`` for a retry at ``due_at``; with ``entry_id``, ack that stream entry in the same
        transaction (a crash before it leaves the entry pending: delivered again, never lost)."""
        k = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(k.webhook_deliveries, record.id, record.to_json())
            pipe.zadd(k.webhook_retries, {record.id: due_at})
            await pipe.execute()
        await self.ack(*([entry_id] if entry_id else []))

    async def schedule_many(self, records: list[tuple[Record, float]], *, entry_ids: list[str]) -> None:
        """:meth:`schedule` for a batch, in one transaction and one ack."""
        if records:
            k = self.keys
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(k.webhook_deliveries, mapping={r.id: r.to_json() for r, _ in records})
                pipe.zadd(k.webhook_retries, {r.id: due for r, due in records})
                await pipe.execute()
        await self.ack(*entry_ids)

    async def claim_due(self, *, now: float, lease_s: float, count: int) -> list[Record]:
        """Take up to ``count`` due retries under a lease of ``lease_s``."""
        k = self.keys
        ids = await scripts.WEBHOOK_CLAIM.run_async(self.client, [k.webhook_retries], [now, lease_s, count])
        if not ids:
            return []
        raws = await self.client.hmget(k.webhook_deliveries, ids)
        gone = [delivery_id for delivery_id, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:  # dropped meanwhile (a replay or drop from the CLI racing us)
            await self.client.zrem(k.webhook_retries, *gone)
        return [Record.from_json(str(raw)) for raw in raws if raw is not None]

    async def done(self, record: Record, *, entry_id: str | None = None) -> None:
        """Delivered (or nowhere to deliver any more): forget the retry and ack the entry."""
        k = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(k.webhook_retries, record.id)
            pipe.hdel(k.webhook_deliveries, record.id)
            await pipe.execute()
        await self.ack(*([entry_id] if entry_id else []))

    async def dead_letter(self, record: Record, *, entry_id: str | None = None) -> None:
        k = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(k.webhook_deliveries, record.id, record.to_json())
            pipe.zrem(k.webhook_retries, record.id)
            pipe.zadd(k.webhook_dead_letters, {record.id: time.time()})
            await pipe.execute()
        await self.ack(*([entry_id] if entry_id else []))

    # --- dead letters (``parley webhooks dead-letters ...``) ------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[tuple[Record, float]]:
        rows: Any = await self.client.zrange(self.keys.webhook_dead_letters, 0, limit - 1, withscores=True)
        if not rows:
            return []
        raws = await self.client.hmget(self.keys.webhook_deliveries, [delivery_id for delivery_id, _ in rows])
        return [(Record.from_json(str(raw)), float(at)) for (_, at), raw in zip(rows, raws, strict=True)
                if raw]

    async def dead_letter_of(self, delivery_id: str) -> Record | None:
        if await self.client.zscore(self.keys.webhook_dead_letters, delivery_id) is None:
            return None
        raw = await self.client.hget(self.keys.webhook_deliveries, delivery_id)
        return Record.from_json(str(raw)) if raw else None

    async def replay(self, record: Record) -> None:
        """Back in the retry set, due now, with a fresh retry budget."""
        fresh = replace(record, failures=0, first_at=0.0)
        k = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(k.webhook_deliveries, record.id, fresh.to_json())
            pipe.zrem(k.webhook_dead_letters, record.id)
            pipe.zadd(k.webhook_retries, {record.id: time.time()})
            await pipe.execute()

    async def drop(self, record: Record) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.webhook_dead_letters, record.id)
            pipe.hdel(self.keys.webhook_deliveries, record.id)
            await pipe.execute()
