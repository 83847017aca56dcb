"""A broker of its own, with real processes: the wake-ups on a second Redis that is stopped mid-run (the API
keeps answering 202 fast, every accepted turn completes once the broker is back), and on a real RabbitMQ."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from conftest import wait_until
from pydantic import SecretStr
from rabbitmq_support import RabbitMQ, Unavailable
from stack import start_beat, workers

from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow
INGRESS_P99_S = 0.1
BROKER_DOWN_S = 10.0


@contextmanager
def serve(settings: Settings) -> Iterator[httpx.Client]:
    """The API on uvicorn (in this process) with ``settings``, and a client of it."""
    from parley.api.main import create_app
    from parley.worker.local.background import BackgroundServer

    with BackgroundServer(create_app(settings)) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            yield http


def new_conversation(http: httpx.Client) -> str:
    return str(http.post("/v1/conversations", json={}).json()["id"])


def post_turn(http: httpx.Client, conv: str, text: str) -> tuple[str, float]:
    """The turn's id and how long the API took to accept it."""
    started = time.perf_counter()
    response = http.post(f"/v1/conversations/{conv}/turns", json={"input": text})
    elapsed = time.perf_counter() - started
    assert response.status_code == 202, response.text
    return str(response.json()["id"]), elapsed


def completed_events(client: redis.Redis, conv: str) -> list[str]:
    """The turn ids of the conversation's ``turn.completed`` events, in stream order."""
    events = [json.loads(fields["data"]) for _, fields in client.xrange(Keys().events(conv))]
    return [str(e["turn_id"]) for e in events if e["type"] == "turn.completed"]


def user_texts(emulator: EmulatorServer, conv: str) -> list[str]:
    return ["".join(p["text"] for p in i["content"]) for i in emulator.store.snapshot_items(conv)
            if i["role"] == "user"]


def assert_each_once_in_order(redis_client: redis.Redis, emulator: EmulatorServer,
                              accepted: dict[str, list[tuple[str, str]]]) -> None:
    """Every conversation's turns completed exactly once, in acceptance order, upstream and in its events."""
    for conv, turns in accepted.items():
        assert completed_events(redis_client, conv) == [turn for turn, _ in turns]
        assert user_texts(emulator, conv) == [text for _, text in turns]
        roles = [i["role"] for i in emulator.store.snapshot_items(conv)]
        assert roles == ["user", "assistant"] * len(turns)
    assert emulator.store.overlap_count() == 0


# --- a second Redis as the broker, stopped mid-run --------------------------------------------------------


@pytest.fixture(name="broker")
def _broker() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


def test_the_ingress_rides_out_a_stopped_broker(settings: Settings, broker: EmbeddedRedis,
                                               emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """With the broker (a Redis of its own) stopped for 10 s, 50 POST …/turns to idle conversations (each
    needs a wake-up), at its start and near its end, all get 202 with p99 under 100 ms; state stays on the other Redis; once the broker is back, the
    reaper re-sends the lost wake-ups and every accepted turn completes once, in order."""
    settings = settings.model_copy(update={"broker_url": SecretStr(broker.url)})
    with serve(settings) as http, workers(settings, 1, concurrency=20), start_beat(settings):
        convs = [new_conversation(http) for _ in range(26)]
        accepted: dict[str, list[tuple[str, str]]] = {conv: [] for conv in convs}
        turn, _ = post_turn(http, convs[0], "before")
        accepted[convs[0]].append((turn, "before"))
        wait_until(lambda: completed_events(redis_client, convs[0]), timeout_s=20, message="the first turn")
        broker.stop()
        stopped_at = time.monotonic()
        durations = []
        for round_ in range(2):
            if round_:  # the second half near the end of the outage: still answered at once
                time.sleep(max(0.0, stopped_at + BROKER_DOWN_S - 2 - time.monotonic()))
            for conv in convs[1:]:
                text = f"down {round_}"
                turn, took = post_turn(http, conv, text)
                accepted[conv].append((turn, text))
                durations.append(took)
        assert len(durations) == 50
        p99 = sorted(durations)[round(0.99 * (len(durations) - 1))]
        assert p99 < INGRESS_P99_S, f"POST …/turns p99 {p99 * 1000:.1f} ms with the broker down"
        assert redis_client.llen("parley") == 0  # the wake-ups' queue is on the broker, not with the state
        time.sleep(max(0.0, stopped_at + BROKER_DOWN_S - time.monotonic()))
        assert not completed_events(redis_client, convs[1]), "a turn ran without a broker"
        broker.start()
        everything = sum(len(turns) for turns in accepted.values())
        wait_until(lambda: sum(len(completed_events(redis_client, c)) for c in convs) >= everything,
                   timeout_s=60, interval_s=0.2, message="every accepted turn after the broker came back")
        time.sleep(0.3)  # a duplicate, if any, would arrive now
    assert_each_once_in_order(redis_client, emulator, accepted)


# --- RabbitMQ ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", name="rabbitmq")
def _rabbitmq() -> Iterator[RabbitMQ]:
    with tempfile.TemporaryDirectory(prefix="parley-rabbitmq-") as tmp:
        server = RabbitMQ(Path(tmp))
        try:
            server.start()
        except Unavailable as exc:
            pytest.skip(f"no RabbitMQ here: {exc}")
        try:
            yield server
        finally:
            server.stop()


def test_the_pipeline_runs_with_rabbitmq_as_the_broker(
        rabbitmq: RabbitMQ, settings: Settings, redis_client: redis.Redis, emulator: EmulatorServer) -> None:
    """API, two Celery worker processes and the emulator with a real RabbitMQ carrying the wake-ups: 20
    conversations x 5 turns (0-20 ms upstream), each turn completed exactly once and in order, and no Celery
    queue in Redis."""
    emulator.config.latency_ms = (0, 20)
    settings = settings.model_copy(update={"broker_url": SecretStr(rabbitmq.url)})
    with serve(settings) as http, workers(settings, 2, concurrency=20):
        convs = [new_conversation(http) for _ in range(20)]
        accepted: dict[str, list[tuple[str, str]]] = {conv: [] for conv in convs}
        for i in range(5):  # interleaved across conversations, as bots' users would send
            for conv in convs:
                text = f"{conv[-6:]} t{i + 1}"
                accepted[conv].append((post_turn(http, conv, text)[0], text))
        wait_until(lambda: sum(len(completed_events(redis_client, c)) for c in convs) >= 100, timeout_s=60,
                   interval_s=0.2, message="all 100 turns completed")
        time.sleep(0.3)  # a duplicate, if any, would arrive now
    assert_each_once_in_order(redis_client, emulator, accepted)
    assert not redis_client.exists("parley"), "wake-ups went to Redis, not RabbitMQ"
