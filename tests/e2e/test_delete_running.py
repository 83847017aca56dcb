"""Deleting a conversation while a real Celery worker runs one of its turns: the turn ends as cancelled, and
whatever the worker does once its upstream call returns brings none of the conversation's keys back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from conftest import wait_until
from stack import workers

from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


def test_a_turn_running_at_delete_time_brings_nothing_back(settings: Settings, http: httpx.Client,
                                                           emulator: EmulatorServer,
                                                           redis_client: redis.Redis) -> None:
    """The turn is streaming deltas (2 s upstream) when its conversation is deleted: it gets one terminal
    event, ``turn.cancelled``; its worker is fenced out, and once its upstream call is over the conversation's
    hash tag holds only the cancellation, while the same worker goes on serving other conversations."""
    keys = Keys()
    conv, other = (http.post("/v1/conversations", json={}).json()["id"] for _ in range(2))
    with workers(settings, 1, concurrency=4):
        turn = http.post(f"/v1/conversations/{conv}/turns", json={
            "input": "a secret", "metadata": {"emulator_fault": "latency=2000;ttft=200"}}).json()["id"]
        wait_until(lambda: redis_client.xlen(keys.events(conv)) >= 3, timeout_s=10,
                   message="the turn to stream its first delta")
        assert http.get(f"/v1/turns/{turn}").json()["status"] == "running"
        assert http.delete(f"/v1/conversations/{conv}").status_code == 200
        wait_until(lambda: not emulator.store.summary()["locked"], timeout_s=10,
                   message="the upstream call to end")
        time.sleep(1.0)  # the worker's last writes (a delta, the finish, the release) happen now
        later = http.post(f"/v1/conversations/{other}/turns", json={"input": "still there?"}).json()["id"]
        wait_until(lambda: http.get(f"/v1/turns/{later}").json()["status"] == "completed", timeout_s=15,
                   message="another conversation's turn on the same worker")

    assert set(redis_client.scan_iter(match=f"{keys.prefix}:{{{conv}}}:*")) <= {keys.events(conv)}
    left = [json.loads(fields["data"]) for _, fields in redis_client.xrange(keys.events(conv))]
    assert [(e["type"], e["turn_id"]) for e in left] == [("turn.cancelled", turn)]
    ends = [json.loads(fields["data"]) for _, fields in redis_client.xrange(keys.replies)]
    assert [e["type"] for e in ends if e["turn_id"] == turn] == ["turn.cancelled"]
    assert http.get(f"/v1/turns/{turn}").status_code == 404
