"""The global replies stream: every terminal event (``turn.completed`` / ``turn.failed`` /
``turn.cancelled``, and the double-texting ends ``turn.merged`` / ``turn.superseded`` / ``turn.interrupted``),
for bots that consume replies at least once with a consumer group (``XREADGROUP`` / ``XACK``, with entries of
a dead consumer reclaimed by ``XAUTOCLAIM``), and for the webhook dispatcher (worker/webhooks/).

A reply reaches the stream through its conversation's outbox (``finish.lua`` writes it there atomically with
the turn's result, ``cancel.lua`` with the cancellation); :func:`relay` copies it over and the reaper relays
what a crash left behind. A crash between the copy and the removal, or two relays of one outbox at once (a
worker's and the reaper's), can copy an entry twice, so consumers dedupe by the event ``id``; neither can lose
one, since a relay removes exactly the entries it copied.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from ..log import get_logger
from ..store.keys import Keys
from .models import Event, parse_event

log = get_logger(__name__)

DEFAULT_MIN_IDLE_MS = 30_000


def relay(client: redis.Redis, keys: Keys, conversation_id: str, *, maxlen: int) -> int:
    """Copy the conversation's outbox to the replies stream; returns how many entries were copied."""
    return relay_many(client, keys, [conversation_id], maxlen=maxlen)


def relay_many(client: redis.Redis, keys: Keys, conversation_ids: Collection[str], *, maxlen: int) -> int:
    """Copy several outboxes in two round trips."""
    read = client.pipeline(transaction=False)
    for conv in conversation_ids:
        read.lrange(keys.outbox(conv), 0, -1)
    batches = read.execute()
    if not any(batches):
        return 0
    write = client.pipeline(transaction=False)
    for conv, entries in zip(conversation_ids, batches, strict=True):
        for payload in entries:
            write.xadd(keys.replies, {"data": payload}, maxlen=maxlen, approximate=True)
        for payload in entries:
            # Remove exactly what was copied (each payload is unique: it carries its seq). Trimming a count
            # instead could drop a reply appended after another relay of this outbox trimmed its own copy.
            write.lrem(keys.outbox(conv), 1, payload)
    write.execute()
    return sum(len(entries) for entries in batches)


async def relay_async(client: redis.asyncio.Redis, keys: Keys, conversation_id: str, *, maxlen: int) -> int:
    """:func:`relay` for the async ingress (a cancellation's event)."""
    outbox = keys.outbox(conversation_id)
    entries = await client.lrange(outbox, 0, -1)
    if not entries:
        return 0
    async with client.pipeline(transaction=False) as pipe:
        for payload in entries:
            pipe.xadd(keys.replies, {"data": payload}, maxlen=maxlen, approximate=True)
        for payload in entries:
            pipe.lrem(outbox, 1, payload)
        await pipe.execute()
    return len(entries)


@dataclass(frozen=True)
class Delivery:
    entry_id: str
    event: Event


class ReplyConsumer:
    """One consumer of a consumer group on the replies stream.

    A new group starts at the newest entry (``start="$"``): it gets the replies finished from then on. Pass
    ``start="0"`` to have a new group read the stream's whole history. With ``metadata``, only replies whose
    event metadata has all those pairs are delivered; the others are acknowledged and skipped (another group
    can have them), so several bots can share one stream.

    >>> consumer = ReplyConsumer(redis.Redis.from_url(url, decode_responses=True), group="slack-bot",
    ...                          name="pod-1")
    >>> for delivery in consumer.deliveries():      # blocks, yields forever
    ...     post_to_slack(delivery.event)           # must be idempotent per delivery.event.id
    ...     consumer.ack(delivery)
    """

    def __init__(self, client: redis.Redis, *, group: str, name: str, keys: Keys | None = None,
                 min_idle_ms: int = DEFAULT_MIN_IDLE_MS, start: str = "$",
                 metadata: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.group = group
        self.name = name
        self.stream = (keys or Keys()).replies
        self.min_idle_ms = min_idle_ms
        self.metadata = dict(metadata or {})
        self.ensure_group(start)

    def ensure_group(self, start: str = "$") -> None:
        """Create the group if it does not exist; an existing group keeps its position whatever ``start``."""
        try:
            self.client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, *, count: int = 100, block_ms: int = 1000) -> list[Delivery]:
        """Entries of consumers idle longer than ``min_idle_ms`` first, then new ones; entries the metadata
        filter rejects are acknowledged here and not returned."""
        _, claimed, _ = self.client.xautoclaim(self.stream, self.group, self.name, self.min_idle_ms,
                                               start_id="0-0", count=count)
        if claimed:
            return self._matching([self._delivery(entry_id, fields) for entry_id, fields in claimed
                                   if fields])
        batches: Any = self.client.xreadgroup(self.group, self.name, {self.stream: ">"}, count=count,
                                              block=block_ms)
        return self._matching([self._delivery(entry_id, fields) for _, entries in batches or []
                               for entry_id, fields in entries])

    def _matching(self, deliveries: list[Delivery]) -> list[Delivery]:
        if not self.metadata:
            return deliveries
        wanted = self.metadata.items()
        keep, skipped = [], []
        for delivery in deliveries:
            if wanted <= (getattr(delivery.event, "metadata", None) or {}).items():
                keep.append(delivery)
            else:
                skipped.append(delivery.entry_id)
        if skipped:
            self.client.xack(self.stream, self.group, *skipped)
        return keep

    def deliveries(self, *, block_ms: int = 1000) -> Iterator[Delivery]:
        while True:
            yield from self.read(block_ms=block_ms)

    def ack(self, delivery: Delivery) -> None:
        self.client.xack(self.stream, self.group, delivery.entry_id)

    @staticmethod
    def _delivery(entry_id: str, fields: dict[str, str]) -> Delivery:
        return Delivery(entry_id=entry_id, event=parse_event(fields["data"]))
