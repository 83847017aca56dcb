"""Writes a worker defers to one thread: the queued-turns counter and the replies relay, against a real Redis."""

from __future__ import annotations

import redis
from conftest import wait_until

from parley.worker.settings import Settings
from parley.worker.store.deferred import DeferredWrites
from parley.worker.store.keys import Keys


def test_flush_decrements_the_counter_and_relays_outboxes(settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    redis_client.set(keys.queued_total, 5)
    redis_client.rpush(keys.outbox("conv_a"), '{"id": "a1"}', '{"id": "a2"}')
    deferred = DeferredWrites(redis_client, keys, maxlen=1000, interval_s=3600)  # the thread waits; flush by hand
    for _ in range(3):
        deferred.dequeued()
    deferred.relay("conv_a")
    deferred.flush()
    assert int(redis_client.get(keys.queued_total)) == 2
    assert [fields["data"] for _, fields in redis_client.xrange(keys.replies)] == ['{"id": "a1"}', '{"id": "a2"}']
    assert redis_client.llen(keys.outbox("conv_a")) == 0
    deferred.flush()  # nothing pending: nothing written twice
    assert int(redis_client.get(keys.queued_total)) == 2 and redis_client.xlen(keys.replies) == 2


def test_the_thread_flushes_within_its_interval(settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    redis_client.set(keys.queued_total, 10)
    deferred = DeferredWrites(redis_client, keys, maxlen=1000, interval_s=0.01)
    for _ in range(4):
        deferred.dequeued()
    wait_until(lambda: int(redis_client.get(keys.queued_total)) == 6, timeout_s=2)
    redis_client.rpush(keys.outbox("conv_b"), '{"id": "b1"}')
    deferred.relay("conv_b")
    wait_until(lambda: redis_client.xlen(keys.replies) == 1, timeout_s=2)
