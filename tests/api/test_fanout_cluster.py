"""The fan-out hub on a real 3-master Redis Cluster: its streams are read one XREAD per slot (a multi-slot
XREAD is refused there), so listeners of conversations on every shard get every event once, in order, with
events published by the ingress' own script on the cluster."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.crc import key_slot

from parley.api.fanout import Hub
from parley.api.fanout_readers import POLL_MS, SlotReader, by_slot
from parley.worker.settings import Settings
from parley.worker.store.connections import async_client
from parley.worker.store.ingress import Ingress
from parley.worker.store.keys import Keys

KEYS = Keys()


def test_streams_are_grouped_by_slot() -> None:
    """Two streams of one slot go in one XREAD; a conversation in another slot gets its own."""
    a, b = KEYS.events("conv_a"), KEYS.events("conv_b")
    shared = f"{KEYS.prefix}:{{conv_a}}:other"
    groups = by_slot({a: 3, b: 0, shared: 7})
    assert key_slot(a.encode()) != key_slot(b.encode())
    assert groups == {key_slot(a.encode()): {a: 3, shared: 7}, key_slot(b.encode()): {b: 0}}


def test_a_multi_slot_xread_is_refused_on_the_cluster(cluster_client: redis.RedisCluster) -> None:
    """Why the hub needs a reader of its own on a cluster: one XREAD over two conversations' streams fails
    with CROSSSLOT even when both live on the same master."""
    convs = [f"conv_{i}" for i in range(40)]
    node = cluster_client.get_node_from_key(KEYS.events(convs[0]))
    same_node = [c for c in convs if cluster_client.get_node_from_key(KEYS.events(c)) == node][:2]
    assert len(same_node) == 2
    raw = redis.Redis(host=node.host, port=node.port)
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):  # CROSSSLOT Keys in request don't hash ...
        raw.xread({KEYS.events(c): "0-0" for c in same_node})
    raw.close()


def test_listeners_on_every_shard_get_every_event_in_order(cluster_settings: Settings) -> None:
    """30 conversations over the three masters, two listeners each (one from the start, one from the middle),
    while 8 events per conversation are published: every listener gets exactly the events after its start,
    in order; a listener that has caught up gets a new event within a few poll intervals."""
    s = cluster_settings.model_copy(update={"mailbox_cap": 1000})
    per_conv = 8

    async def body() -> None:
        pool = async_client(s)
        ingress = Ingress(pool, s)
        convs = [f"conv_fan{i}" for i in range(30)]
        for conv in convs:
            await ingress.register_conversation(conv, created_at=1, metadata={}, key=None)
        assert len({pool.get_node_from_key(KEYS.events(c)).name for c in convs}) == 3  # type: ignore[attr-defined]
        hub = Hub(s.redis_url_required, pool, ingress.keys)
        await hub.start()
        try:
            async def post(conv: str, n: int) -> None:
                for i in range(n):
                    await ingress.enqueue(conversation_id=conv, input=f"m{i}", model=None, instructions=None,
                                          metadata={}, idempotency_key=None)

            async def listen(conv: str, after_seq: int, last: int) -> list[int]:
                sub = hub.subscribe(conv, after_seq=after_seq)
                seqs: list[int] = []
                try:
                    async with asyncio.timeout(20):
                        async for event in sub.events(idle_s=0.2):
                            if event is not None:
                                seqs.append(event.seq)
                                if event.seq >= last:
                                    return seqs
                finally:
                    sub.close()
                return seqs

            await asyncio.gather(*(post(conv, per_conv // 2) for conv in convs))
            listeners = [listen(c, 0, per_conv) for c in convs] + [listen(c, per_conv // 2, per_conv)
                                                                    for c in convs]
            results = asyncio.gather(*listeners)
            await asyncio.sleep(0.3)
            await asyncio.gather(*(post(conv, per_conv // 2) for conv in convs))
            got = await results
            assert got[:30] == [list(range(1, per_conv + 1))] * 30
            assert got[30:] == [list(range(per_conv // 2 + 1, per_conv + 1))] * 30
            assert isinstance(hub._reader, SlotReader)

            sub = hub.subscribe(convs[0], after_seq=per_conv)
            events = sub.events(idle_s=0.5)
            assert await anext(events) is None  # caught up and attached
            sent = time.monotonic()
            await post(convs[0], 1)
            event = await anext(events)
            assert event is not None and event.seq == per_conv + 1
            assert time.monotonic() - sent < 10 * POLL_MS / 1000
            sub.close()
        finally:
            await hub.stop()
            await pool.aclose()

    asyncio.run(body())
