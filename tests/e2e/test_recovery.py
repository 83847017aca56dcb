"""Crash safety with real processes: SIGKILLed workers, leases kept by heartbeats, duplicate wake-ups, a Redis
restart, graceful shutdown (issue 4, G3/G6/G7)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from conftest import wait_until
from stack import start_beat, start_worker, wait_ready, workers

from parley.worker.celery_app import create_celery
from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.processes import stop
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.secret_url import SecretUrl
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow
RECOVERY_BOUND_S = 3.0 + 1.0 + 6.0  # lease TTL + reaper interval (test settings) + slack for a busy machine


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


def conversation(http: httpx.Client) -> str:
    return str(http.post("/v1/conversations", json={}).json()["id"])


def post(http: httpx.Client, conv: str, text: str, **metadata: str) -> str:
    body: dict[str, object] = {"input": text, **({"metadata": metadata} if metadata else {})}
    response = http.post(f"/v1/conversations/{conv}/turns", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def status(http: httpx.Client, turn: str) -> str:
    return str(http.get(f"/v1/turns/{turn}").json()["status"])


def items(emulator: EmulatorServer, conv: str) -> list[tuple[str, str]]:
    return [(i["role"], "".join(p["text"] for p in i["content"])) for i in emulator.store.snapshot_items(conv)]


def stream_events(client: redis.Redis, conv: str) -> list[dict[str, object]]:
    return [json.loads(fields["data"]) for _, fields in client.xrange(Keys().events(conv))]


@pytest.mark.parametrize("point", ["claimed", "response_created", "upstream_done", "finished"])
def test_sigkill_at_any_point_completes_exactly_once(point: str, settings: Settings, http: httpx.Client,
                                                     emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    emulator.config.delta_interval_ms = 20
    conv = conversation(http)
    doomed = start_worker(settings, "doomed", concurrency=4, extra_env={"PARLEY_FAULTPOINT": point})
    try:
        wait_ready(settings, ["doomed"])
        first, second = post(http, conv, "first"), post(http, conv, "second")
        doomed.wait(timeout=20)
        assert doomed.returncode == -signal.SIGKILL
        killed_at = time.monotonic()
        with workers(settings, 1, concurrency=4), start_beat(settings):
            wait_until(lambda: status(http, second) == "completed", timeout_s=RECOVERY_BOUND_S + 10)
            recovered_s = time.monotonic() - killed_at
    finally:
        stop(doomed)
    assert status(http, first) == "completed"
    assert [role for role, _ in items(emulator, conv)] == ["user", "assistant", "user", "assistant"]
    assert [text for role, text in items(emulator, conv) if role == "user"] == ["first", "second"]
    completed = [e for e in stream_events(redis_client, conv) if e["type"] == "turn.completed"]
    assert [e["turn_id"] for e in completed] == [first, second]
    assert emulator.store.overlap_count() == 0 or point == "response_created"
    assert recovered_s < RECOVERY_BOUND_S + 5


def test_a_turn_that_kills_every_worker_is_dead_lettered_after_max_crashes(
        settings: Settings, http: httpx.Client, emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """A poison turn (its worker is SIGKILLed whenever it starts it) is dead-lettered once it has killed
    PARLEY_MAX_CRASHES + 1 workers, without ever reaching upstream; the conversation's next turn completes.
    Workers are restarted as they die, as a process manager would."""
    conv = conversation(http)
    poison, after = post(http, conv, "poison pill"), post(http, conv, "after")
    poisoned = settings.model_copy(update={"max_crashes": 2})
    env = {"PARLEY_FAULTPOINT": "running@poison", "PARLEY_MAX_CRASHES": "2"}
    deaths = 0
    with start_beat(poisoned):
        deadline = time.monotonic() + 90
        while status(http, after) != "completed":
            assert time.monotonic() < deadline, f"stuck after {deaths} deaths"
            worker = start_worker(poisoned, f"w{deaths}", concurrency=4, extra_env=env)
            try:
                while worker.poll() is None and status(http, after) != "completed":
                    time.sleep(0.2)
            finally:
                stop(worker)
            deaths += worker.returncode == -signal.SIGKILL
    turn = http.get(f"/v1/turns/{poison}").json()
    assert turn["status"] == "failed" and turn["error"]["type"] == "dead_lettered"
    assert deaths == 3 and turn["crashes"] == 3
    assert redis_client.zscore(Keys().dead_letters, f"{conv}/{poison}") is not None
    assert [text for role, text in items(emulator, conv) if role == "user"] == ["after"]


def test_heartbeat_keeps_the_lease_through_a_long_call(settings: Settings, http: httpx.Client,
                                                       emulator: EmulatorServer) -> None:
    """An upstream call of 2.5x the lease TTL is not taken over by a second worker."""
    conv = conversation(http)
    with workers(settings, 2, concurrency=4), start_beat(settings):
        turn = post(http, conv, "long", emulator_fault="latency=7500")
        wait_until(lambda: status(http, turn) == "completed", timeout_s=20)
    assert len(emulator.store.snapshot_requests()) == 1
    assert emulator.store.overlap_count() == 0


def test_duplicate_wakeups_never_call_upstream_twice(settings: Settings, http: httpx.Client,
                                                     emulator: EmulatorServer) -> None:
    """Redelivered or duplicated Celery messages for a conversation that is being processed are no-ops."""
    conv = conversation(http)
    celery = create_celery(settings)
    with workers(settings, 2, concurrency=8):
        turn = post(http, conv, "once", emulator_fault="latency=1500")
        time.sleep(0.3)
        for _ in range(10):
            celery.send_task("parley.drain", args=[conv], queue="parley")
        wait_until(lambda: status(http, turn) == "completed", timeout_s=15)
        time.sleep(0.5)
    assert len(emulator.store.snapshot_requests()) == 1
    assert [role for role, _ in items(emulator, conv)] == ["user", "assistant"]


def test_an_idle_worker_stops_at_once(settings: Settings) -> None:
    """SIGTERM to an idle worker: it is gone well within a second (kombu's warm shutdown waits for the BRPOP
    in flight, 1 s by default; parley's is BRPOP_TIMEOUT_S), so restarts and rollouts do not wait on it."""
    worker = start_worker(settings, "idle", concurrency=4)
    try:
        wait_ready(settings, ["idle"])
        time.sleep(0.3)  # into its BRPOP loop
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
        took_s = time.monotonic() - started
    finally:
        stop(worker)
    assert worker.returncode == 0
    assert took_s < 0.8, took_s


def test_graceful_shutdown_hands_running_turns_back(settings: Settings, http: httpx.Client,
                                                    emulator: EmulatorServer) -> None:
    emulator.config.delta_interval_ms = 150
    emulator.config.reply_words = 40
    conv = conversation(http)
    quick = settings.model_copy(update={"shutdown_grace_s": 0.5})
    worker = start_worker(quick, "leaving", concurrency=4)
    try:
        wait_ready(quick, ["leaving"])
        first, second = post(http, conv, "long reply"), post(http, conv, "after")
        wait_until(lambda: status(http, first) == "running", timeout_s=10)
        time.sleep(0.3)
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
        assert time.monotonic() - sent < 5
    finally:
        stop(worker)
    assert status(http, first) == "queued" and status(http, second) == "queued"
    with workers(settings, 1, concurrency=4):
        wait_until(lambda: status(http, second) == "completed", timeout_s=20)
    assert [text for role, text in items(emulator, conv) if role == "user"] == ["long reply", "after"]
    assert len([r for r in emulator.store.snapshot_requests() if r.input_texts == ["long reply"]]) == 1


def test_graceful_shutdown_passes_prefetched_wakeups_on(settings: Settings, http: httpx.Client,
                                                       emulator: EmulatorServer) -> None:
    """Wake-ups the leaving worker took but never started reach the next worker at once, not after the
    reaper's hint retry (there is no reaper here, and the retry is far away): without ack emulation, kombu
    still puts the unacked messages it holds back on the queue when it closes."""
    emulator.config.latency_ms = (4000, 4000)
    # The running turns hold their threads through the grace period, so the pool's shutdown finds the
    # prefetched wake-ups still waiting (and cancels them).
    patient = settings.model_copy(update={"shutdown_grace_s": 1.5, "hint_retry_s": 600.0})
    convs = [conversation(http) for _ in range(8)]
    worker = start_worker(patient, "leaving", concurrency=2)  # runs 2, prefetches the rest
    try:
        wait_ready(patient, ["leaving"])
        turns = [post(http, conv, "hello") for conv in convs]
        wait_until(lambda: sum(status(http, t) == "running" for t in turns) == 2, timeout_s=10)
        time.sleep(0.3)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
    finally:
        stop(worker)
    emulator.config.latency_ms = (0, 0)
    with workers(patient, 1, concurrency=8):
        wait_until(lambda: all(status(http, t) == "completed" for t in turns), timeout_s=15)
    assert all([role for role, _ in items(emulator, conv)] == ["user", "assistant"] for conv in convs)


def test_redis_restart_loses_no_turn(settings: Settings, emulator: EmulatorServer,
                                     api_http: Callable[..., httpx.Client]) -> None:
    """AOF everysec: turns accepted before a restart complete; while Redis is down the API answers 503 with
    Retry-After, quickly; workers reconnect by themselves."""
    from parley.api.main import create_app

    with EmbeddedRedis(appendonly=True) as server:
        local = settings.model_copy(update={"redis_url": SecretUrl(server.url)})
        with BackgroundServer(create_app(local)) as api, api_http(api.url) as http:
            convs = [conversation(http) for _ in range(5)]
            with workers(local, 1, concurrency=20), start_beat(local):
                before = [post(http, conv, f"before {n}", emulator_fault="latency=300")
                          for n, conv in enumerate(convs)]
                time.sleep(1.2)  # let AOF everysec fsync what was accepted
                server.stop()
                started = time.monotonic()
                down = http.post(f"/v1/conversations/{convs[0]}/turns", json={"input": "while down"})
                assert down.status_code == 503 and int(down.headers["retry-after"]) >= 1
                assert time.monotonic() - started < 3
                assert http.get("/readyz").status_code == 503
                server.start()
                wait_until(lambda: http.get("/readyz").status_code == 200, timeout_s=10)
                after = [post(http, conv, f"after {n}") for n, conv in enumerate(convs)]
                wait_until(lambda: all(status(http, t) == "completed" for t in before + after), timeout_s=40,
                           interval_s=0.3, message="every accepted turn to complete")
    for n, conv in enumerate(convs):
        users = [text for role, text in items(emulator, conv) if role == "user"]
        assert users == [f"before {n}", f"after {n}"]


def test_global_queue_cap(settings: Settings, api_http: Callable[..., httpx.Client]) -> None:
    from parley.api.main import create_app

    capped = settings.model_copy(update={"global_queue_cap": 3})
    with BackgroundServer(create_app(capped)) as api, api_http(api.url) as http:
        convs = [conversation(http) for _ in range(4)]
        for conv in convs[:3]:
            post(http, conv, "fits")
        refused = http.post(f"/v1/conversations/{convs[3]}/turns", json={"input": "over"})
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "overloaded"
        assert "retry-after" in refused.headers


def test_sigkilled_worker_process_tree_leaves_no_lease_behind(settings: Settings, http: httpx.Client,
                                                             emulator: EmulatorServer,
                                                             redis_client: redis.Redis) -> None:
    """kill -9 of a busy worker (not at a crash point): its conversations resume after the lease expires."""
    emulator.config.delta_interval_ms = 50
    convs = [conversation(http) for _ in range(10)]
    victim = start_worker(settings, "victim", concurrency=20)
    try:
        wait_ready(settings, ["victim"])
        turns = [post(http, conv, f"t{i}") for i in range(2) for conv in convs]
        wait_until(lambda: redis_client.keys(Keys().lease("*")), timeout_s=10)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    finally:
        stop(victim)
    with workers(settings, 1, concurrency=20), start_beat(settings):
        wait_until(lambda: all(status(http, t) == "completed" for t in turns), timeout_s=RECOVERY_BOUND_S + 15,
                   interval_s=0.3)
    for conv in convs:
        assert [text for role, text in items(emulator, conv) if role == "user"] == ["t0", "t1"]
