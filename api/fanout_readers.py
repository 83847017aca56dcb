"""How the fan-out hub (``parley.api.fanout``) reads the streams that have subscribers: one blocking XREAD
over all of them on one Redis, one XREAD per hash slot on Redis Cluster.

A cluster refuses a command whose keys are in different slots (CROSSSLOT), even on one node, and every
conversation's stream has a slot of its own (its hash tag). Blocking one connection per slot would need up
to one connection per listened conversation, which is what the hub exists to avoid; so on a cluster the hub
polls: each round sends one non-blocking XREAD per slot that has subscribers, all in one pipeline (one round
trip per master, the masters in parallel), on the shared cluster client, and pauses ``poll_ms`` after a
round that brought nothing. An event reaches its listeners within about ``poll_ms``; idle listeners cost one
XREAD per listened slot per ``poll_ms``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Protocol, cast

import redis.asyncio
from redis.crc import key_slot

from parley.worker.events.log import entry_id

Batch = list[tuple[str, list[tuple[str, dict[str, str]]]]]
"""XREAD's reply: each stream with entries, and its entries (id, fields)."""

CLIENT_NAME = "parley-fanout"
"""Set on the single-Redis reader connection (``CLIENT LIST`` shows it): one per API process."""
READ_COUNT = 500
"""Entries read per stream and round."""
READ_TIMEOUT_S = 10.0
"""Socket timeout of the reader connection (far above the block time): a dead link fails, never hangs."""
POLL_MS = 50
"""On a cluster: the pause after a round that found nothing new."""


class StreamReader(Protocol):
    async def read(self, positions: Mapping[str, int]) -> Batch:
        """The entries of each stream after its position (a seq); may wait a while for the first one."""

    async def close(self) -> None: ...


def by_slot(positions: Mapping[str, int]) -> dict[int, dict[str, int]]:
    """The streams grouped by hash slot: what one cluster XREAD may name together."""
    groups: dict[int, dict[str, int]] = defaultdict(dict)
    for stream, seq in positions.items():
        groups[key_slot(stream.encode())][stream] = seq
    return dict(groups)


class BlockingReader:
    """One Redis: one connection of its own and one ``XREAD BLOCK`` over every stream."""

    def __init__(self, redis_url: str, *, block_ms: int) -> None:
        self.block_ms = block_ms
        self.client = redis.asyncio.Redis.from_url(
            redis_url, decode_responses=True, single_connection_client=True, client_name=CLIENT_NAME,
            socket_timeout=READ_TIMEOUT_S, socket_connect_timeout=READ_TIMEOUT_S)

    async def read(self, positions: Mapping[str, int]) -> Batch:
        streams = {stream: entry_id(seq) for stream, seq in positions.items()}
        reply = await self.client.xread(streams, count=READ_COUNT, block=self.block_ms)
        return cast(Batch, reply or [])

    async def close(self) -> None:
        await self.client.aclose()


class SlotReader:
    """Redis Cluster: per round, one non-blocking ``XREAD`` per slot, pipelined on the shared cluster client.

    Each command names its master (the client's slot map) rather than leaving redis-py to find the keys of a
    command it cannot parse locally, which would cost a ``COMMAND GETKEYS`` round trip per XREAD; a MOVED
    reply after a failover or resharding is followed by redis-py, which also refreshes the map.
    """

    def __init__(self, cluster: redis.asyncio.RedisCluster, *, poll_ms: int = POLL_MS) -> None:
        self.cluster = cluster
        self.poll_s = poll_ms / 1000

    async def read(self, positions: Mapping[str, int]) -> Batch:
        await self.cluster.initialize()  # a no-op once the slot map is known
        pipe: Any = self.cluster.pipeline(transaction=False)
        for group in by_slot(positions).values():
            streams = list(group)
            node = self.cluster.get_node_from_key(streams[0])
            pipe.execute_command("XREAD", "COUNT", READ_COUNT, "STREAMS", *streams,
                                 *(entry_id(group[s]) for s in streams), target_nodes=node)
        replies = await pipe.execute()
        batch: Batch = [pair for reply in replies if reply for pair in reply]
        if not batch:
            await asyncio.sleep(self.poll_s)
        return batch

    async def close(self) -> None:
        """Nothing of its own: the pool's connections go back to the pool after each round."""
