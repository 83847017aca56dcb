"""The global replies stream: every ``turn.completed`` / ``turn.failed``, for bots that consume replies at least
once with a consumer group (``XREADGROUP`` / ``XACK``, with entries of a dead consumer reclaimed by
``XAUTOCLAIM``).

A reply reaches the stream through its conversation's outbox (``finish.lua`` writes it there atomically with the
turn's result); :func:`relay` copies it over and the reaper relays what a crash left behind. A crash between the
copy and the trim can copy an entry twice, so consumers dedupe by the event ``id``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

import redis

from .events import Event, parse_event
from .keys import Keys
from .log import get_logger

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
        if entries:
            # Trim only what was copied: replies finished meanwhile stay for the next relay.
            write.ltrim(keys.outbox(conv), len(entries), -1)
    write.execute()
    return sum(len(entries) for entries in batches)


@dataclass(frozen=True)
class Delivery:
    entry_id: str
    event: Event


class ReplyConsumer:
    """One consumer of a consumer group on the replies stream.

    >>> consumer = ReplyConsumer(redis.Redis.from_url(url, decode_responses=True), group="slack-bot",
    ...                          name="pod-1")
    >>> for delivery in consumer.deliveries():      # blocks, yields forever
    ...     post_to_slack(delivery.event)           # must be idempotent per delivery.event.id
    ...     consumer.ack(delivery)
    """

    def __init__(self, client: redis.Redis, *, group: str, name: str, keys: Keys | None = None,
                 min_idle_ms: int = DEFAULT_MIN_IDLE_MS) -> None:
        self.client = client
        self.group = group
        self.name = name
        self.stream = (keys or Keys()).replies
        self.min_idle_ms = min_idle_ms
        self.ensure_group()

    def ensure_group(self, start: str = "0") -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, *, count: int = 100, block_ms: int = 1000) -> list[Delivery]:
        """Entries of consumers idle longer than ``min_idle_ms`` first, then new ones."""
        _, claimed, _ = self.client.xautoclaim(self.stream, self.group, self.name, self.min_idle_ms,
                                               start_id="0-0", count=count)
        if claimed:
            return [self._delivery(entry_id, fields) for entry_id, fields in claimed if fields]
        batches = self.client.xreadgroup(self.group, self.name, {self.stream: ">"}, count=count, block=block_ms)
        return [self._delivery(entry_id, fields) for _, entries in batches or [] for entry_id, fields in entries]

    def deliveries(self, *, block_ms: int = 1000) -> Iterator[Delivery]:
        while True:
            yield from self.read(block_ms=block_ms)

    def ack(self, delivery: Delivery) -> None:
        self.client.xack(self.stream, self.group, delivery.entry_id)

    @staticmethod
    def _delivery(entry_id: str, fields: dict[str, str]) -> Delivery:
        return Delivery(entry_id=entry_id, event=parse_event(fields["data"]))
