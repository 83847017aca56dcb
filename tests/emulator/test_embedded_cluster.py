"""The embedded Redis Cluster: three masters that split every slot, are all known to each other and serve
keys of any slot through a cluster client; its servers go when it closes, and with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis
from conftest import wait_until

from parley.worker.local.redis_cluster import SLOTS, EmbeddedCluster, cluster_ready, slot_ranges
from parley.worker.local.redis_server import pid_alive


@pytest.mark.parametrize("masters", [1, 3, 7])
def test_slot_ranges_cover_every_slot_once(masters: int) -> None:
    ranges = slot_ranges(masters)
    assert len(ranges) == masters and ranges[0][0] == 0 and ranges[-1][1] == SLOTS - 1
    assert all(ranges[i][1] + 1 == ranges[i + 1][0] for i in range(masters - 1))
    assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1


def test_cluster_ready_needs_every_node_ok_with_all_slots_and_masters() -> None:
    ok = {"cluster_state": "ok", "cluster_slots_assigned": str(SLOTS), "cluster_known_nodes": "3"}
    assert cluster_ready([ok, ok, ok], 3)
    assert not cluster_ready([ok, ok, {**ok, "cluster_state": "fail"}], 3)
    assert not cluster_ready([ok, {**ok, "cluster_known_nodes": "2"}, ok], 3)  # a MEET not through yet
    assert not cluster_ready([{**ok, "cluster_slots_assigned": "10923"}, ok, ok], 3)


def test_three_masters_share_the_slots_and_serve_any_key(redis_cluster: EmbeddedCluster,
                                                         cluster_client: redis.RedisCluster) -> None:
    """The session's cluster: three masters, each with a third of the slots; a cluster client writes and
    reads keys that land on every one of them."""
    primaries = cluster_client.get_primaries()
    assert len(primaries) == 3 and not cluster_client.get_replicas()
    keys = [f"spread:{i}" for i in range(30)]
    for key in keys:
        cluster_client.set(key, key)
    assert {cluster_client.get_node_from_key(key).name for key in keys} == {p.name for p in primaries}
    assert [cluster_client.get(key) for key in keys] == keys


def test_close_stops_every_node_and_a_dead_parent_takes_them_along() -> None:
    """close() leaves no server process; a parent SIGKILLed with a cluster running leaves none either
    (each node is an EmbeddedRedis, started with PDEATHSIG)."""
    cluster = EmbeddedCluster().start()
    pids = [node.pid for node in cluster.nodes]
    cluster.close()
    assert pids and not any(pid_alive(pid) for pid in pids if pid)
    script = ("from parley.worker.local.redis_cluster import EmbeddedCluster; import time; "
              "c = EmbeddedCluster().start(); print(*(n.pid for n in c.nodes), flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert parent.stdout is not None
    children = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(children) == 3 and all(pid_alive(pid) for pid in children)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_until(lambda: not any(pid_alive(pid) for pid in children), timeout_s=5, message="the nodes to exit")
