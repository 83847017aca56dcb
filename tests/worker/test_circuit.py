"""The shared upstream circuit: two processes' views of one model's health in a real Redis, and the drain loop
waiting with it instead of calling a failing upstream (the emulator through the real SDK)."""

from __future__ import annotations

import json
import threading
import time

import redis
from drain_support import make_drainer

from parley.worker.local.emulator import EmulatorServer
from parley.worker.messages import TurnStatus
from parley.worker.run.circuit import CLOSED, HALF_OPEN, OPEN, Circuit
from parley.worker.run.upstream import Upstream, make_client
from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress
from parley.worker.store.keys import Keys


def quick(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(update={"circuit_breaker": True, "circuit_min_calls": 4,
                                       "circuit_failure_ratio": 0.5, "circuit_window_s": 5.0,
                                       "circuit_cooldown_s": 0.4, "circuit_cooldown_max_s": 1.6, **update})


def test_failures_seen_by_one_process_open_the_circuit_for_all(settings: Settings, redis_client: redis.Redis
                                                               ) -> None:
    """Four failed calls reported by one process open the model's circuit; another process that made no call
    learns it at its next report and waits too; other models are not affected."""
    s = quick(settings)
    one, two = Circuit(redis_client, Keys(), s), Circuit(redis_client, Keys(), s)
    for _ in range(4):
        one.record("m", ok=False)
    one.record("other", ok=True)
    one.sync()
    assert one.gate("m") > 0 and one.gate("other") == 0
    two.gate("m")  # known to the second process, as a model its turns call
    two.sync()
    assert 0 < two.gate("m") <= 0.4


def test_half_open_probes_then_reopens_longer_or_closes(settings: Settings, redis_client: redis.Redis) -> None:
    """After the cool-down the circuit half-opens: a process lets one call through per probe interval; a
    failed probe reopens it for twice as long; successful probes close it."""
    s = quick(settings)
    circuit = Circuit(redis_client, Keys(), s, probe_interval_s=0.2)
    for _ in range(4):
        circuit.record("m", ok=False)
    circuit.sync()
    time.sleep(0.45)
    assert circuit.gate("m") == 0  # the cool-down is over: the first probe goes
    assert circuit.gate("m") > 0  # and only one per interval
    circuit.record("m", ok=False)
    circuit.sync()
    assert circuit._models["m"].state == OPEN and 0.4 < circuit.gate("m") <= 0.8
    time.sleep(0.85)
    circuit.gate("m")
    circuit.record("m", ok=True)
    circuit.sync()
    assert circuit._models["m"].state == HALF_OPEN
    for _ in range(4):
        circuit.record("m", ok=True)
    circuit.sync()
    assert circuit.gate("m") == 0 or circuit._models["m"].state != OPEN


def test_a_healthy_model_costs_no_round_trip(settings: Settings, redis_client: redis.Redis) -> None:
    """Gating is local; once no turn has called a closed model for a window, a sync sends nothing."""
    circuit = Circuit(redis_client, Keys(), quick(settings, circuit_window_s=0.3))
    assert circuit.gate("m") == 0
    circuit.record("m", ok=True)
    assert circuit.sync() is True and circuit._models["m"].state == CLOSED
    time.sleep(0.35)
    redis_client.flushdb()
    assert circuit.sync() is False and redis_client.dbsize() == 0


def test_turns_wait_with_the_circuit_through_an_outage(settings: Settings, redis_client: redis.Redis,
                                                       emulator: EmulatorServer) -> None:
    """Every call fails for 2 s: the circuit opens after a few failures, the turns then wait ``circuit_open``
    (published as ``turn.retrying``, not counted as attempts) instead of calling, and all complete in order
    once upstream is back, each once."""
    import asyncio

    import redis.asyncio

    s = quick(settings, backoff_base_s=0.05, backoff_max_s=0.2)
    upstream = Upstream(make_client(s, concurrency=4), s)
    conv = upstream.client.conversations.create().id

    async def post(texts: list[str]) -> list[str]:
        client = redis.asyncio.Redis.from_url(s.redis_url_required, decode_responses=True)
        ingress = Ingress(client, s)
        await ingress.register_conversation(conv, created_at=1, metadata={}, key=None)
        ids = [(await ingress.enqueue(conversation_id=conv, input=text, model=None, instructions=None,
                                      metadata={}, idempotency_key=None)).turn_id for text in texts]
        await client.aclose()
        return ids

    ids = asyncio.run(post(["one", "two", "three"]))
    emulator.config.p_503 = 1.0
    emulator.config.retry_after_s = 0.05
    threading.Timer(2.0, lambda: setattr(emulator.config, "p_503", 0.0)).start()
    drainer = make_drainer(s, redis_client, upstream)
    calls_before = len(emulator.store.snapshot_requests())
    drainer.drain(conv)
    turns = [drainer.mailbox.load(conv, turn_id) for turn_id in ids]
    assert [t.status for t in turns] == [TurnStatus.completed] * 3
    events = [json.loads(e[1]["data"]) for e in redis_client.xrange(Keys().events(conv))]
    causes = [e["cause"] for e in events if e["type"] == "turn.retrying"]
    assert "circuit_open" in causes and "http_503" in causes
    assert turns[0].attempts <= causes.count("http_503") + 1
    items = emulator.store.snapshot_items(conv)
    assert ["".join(p["text"] for p in i["content"]) for i in items if i["role"] == "user"] == ["one", "two", "three"]
    # While open, the workers did not call: far fewer calls than 2 s of 0.05-0.2 s backoff would make.
    assert len(emulator.store.snapshot_requests()) - calls_before < 20
