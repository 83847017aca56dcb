"""End to end with state on a real 3-master Redis Cluster: the API (uvicorn) and real Celery worker processes
with ``PARLEY_REDIS_CLUSTER``, the broker on a standalone Redis of its own (Celery cannot use a cluster),
events collected with SSUBSCRIBE on each conversation's shard. The pipeline's ordering test, reduced to
50 conversations x 5 turns, and a worker SIGKILLed between its upstream call and its finish."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from conftest import wait_until
from stack import start_beat, start_worker, wait_ready, workers

from parley.api.client import ParleyClient
from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.processes import stop
from parley.worker.local.redis_cluster import EmbeddedCluster
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow
KEYS = Keys()


class ShardedSubscriber:
    """Every event published on the given conversations' channels, each SSUBSCRIBEd on its own shard (there
    is no sharded pattern subscription); ready once the cluster confirmed every subscription."""

    def __init__(self, cluster_url: str, conversations: list[str]) -> None:
        self.client = redis.RedisCluster.from_url(cluster_url, decode_responses=True)
        self.pubsub = self.client.pubsub()
        self.pubsub.ssubscribe(*(KEYS.events(conv) for conv in conversations))
        self.events: list[dict[str, object]] = []
        self.confirmed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: self.confirmed == len(conversations), timeout_s=10, message="SSUBSCRIBE replies")

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_sharded_message(timeout=0.05)
            if message is None:
                continue
            if message["type"] == "ssubscribe":
                self.confirmed += 1
            elif message["type"] == "smessage":
                self.events.append(json.loads(message["data"]))

    def of_type(self, type_: str) -> list[dict[str, object]]:
        return [e for e in list(self.events) if e["type"] == type_]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pubsub.close()
        self.client.close()


@pytest.fixture(name="http")
def _http(cluster_settings: Settings, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    from parley.api.main import create_app

    with BackgroundServer(create_app(cluster_settings)) as server, api_http(server.url) as client:
        yield client


def new_conversations(http: httpx.Client, count: int) -> list[str]:
    # Through parley's client, which retries a 503 after its Retry-After as a bot would: redis-py's asyncio
    # cluster client closes every connection when one command meets a connection error, and the requests in
    # flight then are 503s.
    client = ParleyClient(http=http)
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: client.create_conversation().id, range(count)))


def post_turn(http: httpx.Client, conv: str, text: str) -> str:
    """Through parley's client, whose idempotency key makes a retried post the same turn."""
    return ParleyClient(http=http).send_turn(conv, text).id


def texts(emulator: EmulatorServer, conv: str) -> list[tuple[str, str]]:
    items = emulator.store.snapshot_items(conv)
    return [(i["role"], "".join(p["text"] for p in i["content"])) for i in items]


def test_ordering_50_conversations_x_5_turns_on_the_cluster(
        cluster_settings: Settings, http: httpx.Client, emulator: EmulatorServer,
        redis_cluster: EmbeddedCluster, cluster_client: redis.RedisCluster) -> None:
    """Conversations on all three masters, turns posted interleaved from 8 threads, two worker processes:
    every conversation's items are exactly user1, assistant1, ..., user5, assistant5; no overlap upstream;
    every turn completed; each turn.completed is received once on its shard, in order per conversation."""
    emulator.config.latency_ms = (0, 50)
    conversations, turns_each = 50, 5
    convs = new_conversations(http, conversations)
    assert len({cluster_client.get_node_from_key(KEYS.inbox(c)).name for c in convs}) == 3
    subscriber = ShardedSubscriber(redis_cluster.url, convs)
    accepted: dict[str, list[str]] = defaultdict(list)
    groups = [convs[i::8] for i in range(8)]

    def post_group(group: list[str]) -> None:
        for i in range(turns_each):
            for conv in group:
                accepted[conv].append(post_turn(http, conv, f"{conv[-6:]} t{i + 1}"))

    try:
        with workers(cluster_settings, 2, concurrency=50):
            with ThreadPoolExecutor(len(groups)) as pool:
                list(pool.map(post_group, groups))
            wait_until(lambda: len(subscriber.of_type("turn.completed")) >= conversations * turns_each,
                       timeout_s=120, interval_s=0.2, message="all turns completed")
            time.sleep(0.3)  # a duplicate, if any, would arrive now
        completed = subscriber.of_type("turn.completed")
    finally:
        subscriber.close()

    assert emulator.store.overlap_count() == 0
    assert len(completed) == conversations * turns_each
    assert len({e["id"] for e in completed}) == len(completed)
    seen: dict[str, list[str]] = defaultdict(list)
    for event in completed:
        seen[str(event["conversation_id"])].append(str(event["turn_id"]))
    for conv in convs:
        assert seen[conv] == accepted[conv]
        actual = texts(emulator, conv)
        assert [text for role, text in actual if role == "user"] == [f"{conv[-6:]} t{i + 1}"
                                                                    for i in range(turns_each)]
        assert [role for role, _ in actual] == ["user", "assistant"] * turns_each
        for n, (_, reply) in enumerate([a for a in actual if a[0] == "assistant"], start=1):
            assert reply.startswith(f"Reply {n} to: {conv[-6:]} t{n} ")
        assert {cluster_client.hget(KEYS.turn(conv, t), "status") for t in accepted[conv]} == {"completed"}


def test_a_worker_killed_after_its_upstream_call_is_recovered_on_the_cluster(
        cluster_settings: Settings, http: httpx.Client, emulator: EmulatorServer,
        cluster_client: redis.RedisCluster) -> None:
    """A worker SIGKILLed after upstream answered but before it recorded the result: its lease expires on
    the cluster, the reaper (beat) wakes the conversation, and the next worker takes the reply from upstream
    instead of asking again; both turns complete once each, in order."""
    emulator.config.delta_interval_ms = 20
    conv = new_conversations(http, 1)[0]
    doomed = start_worker(cluster_settings, "doomed", concurrency=4,
                          extra_env={"PARLEY_FAULTPOINT": "upstream_done"})
    try:
        wait_ready(cluster_settings, ["doomed"])
        first, second = post_turn(http, conv, "first"), post_turn(http, conv, "second")
        doomed.wait(timeout=20)
        assert doomed.returncode == -signal.SIGKILL
        assert cluster_client.exists(KEYS.inflight(conv))  # died holding the turn
        with workers(cluster_settings, 1, concurrency=4), start_beat(cluster_settings):
            wait_until(lambda: http.get(f"/v1/turns/{second}").json()["status"] == "completed", timeout_s=30,
                       message="the second turn, after the recovery")
    finally:
        stop(doomed)
    assert http.get(f"/v1/turns/{first}").json()["status"] == "completed"
    assert texts(emulator, conv)[0::2] == [("user", "first"), ("user", "second")]
    assert [role for role, _ in texts(emulator, conv)] == ["user", "assistant"] * 2
    assert len(emulator.store.snapshot_requests()) == 2  # the killed attempt's reply was not asked for again
    events = [json.loads(f["data"]) for _, f in cluster_client.xrange(KEYS.events(conv))]
    assert [e["turn_id"] for e in events if e["type"] == "turn.completed"] == [first, second]
