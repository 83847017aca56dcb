"""Shared fixtures: a real Redis (embedded, or ``PARLEY_REDIS_URL``), the upstream emulator on a loopback
port, the API served by uvicorn, and real Celery worker processes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis
import structlog
from pydantic import SecretStr

from parley.worker.local.emulator import EmulatorConfig, EmulatorServer
from parley.worker.local.redis_cluster import EmbeddedCluster
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.secret_url import SecretUrl
from parley.worker.settings import Settings

# The client's tests run in their own process with the server's packages made unimportable, started by
# tests/e2e/test_client_standalone.py; collected here they would prove nothing (and skip without a server).
collect_ignore = ["client"]

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_EMULATOR = EmulatorConfig()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("PARLEY_TEST_REDIS_URL") or os.environ.get("PARLEY_REDIS_URL")
    if external:
        # Tests flush their database: use db 15 of the given server, never the application's own, and one
        # database per xdist process (gw0 → 15, gw1 → 14, …) so parallel tests never flush each other's.
        db = 15 - int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
        yield (external.rsplit("/", 1)[0] if external.count("/") > 2 else external) + f"/{db}"
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(name="redis_client")
def _redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(replace(DEFAULT_EMULATOR)) as server:
        yield server


@pytest.fixture(name="emulator")
def _emulator(emulator_server: EmulatorServer) -> Iterator[EmulatorServer]:
    """The session's emulator, emptied and with default behaviour for each test."""
    emulator_server.emulator.reset()
    for name, value in vars(DEFAULT_EMULATOR).items():
        setattr(emulator_server.config, name, value)
    emulator_server.emulator.faults.reseed(0)
    yield emulator_server
    emulator_server.emulator.reset()


@pytest.fixture(name="settings")
def _settings(redis_client: redis.Redis, redis_url: str, emulator: EmulatorServer) -> Settings:
    return Settings(_env_file=None, redis_url=redis_url, openai_base_url=emulator.base_url,
                    lease_ttl_ms=3000, heartbeat_interval_ms=1000, reaper_interval_s=1.0, hint_retry_s=2.0,
                    backoff_base_s=0.05, backoff_max_s=1.0, worker_concurrency=50, log_level="WARNING",
                    worker_metrics_port=0,
                    # Off unless a test is about it: its reports to Redis would outlive the test that made them.
                    circuit_breaker=False)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedCluster]:
    """A real Redis Cluster of three masters (CLUSTER ADDSLOTSRANGE/MEET over embedded servers), started
    once per session by the tests that ask for it."""
    with EmbeddedCluster() as cluster:
        yield cluster


@pytest.fixture(name="cluster_client")
def _cluster_client(redis_cluster: EmbeddedCluster) -> Iterator[redis.RedisCluster]:
    client = redis.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    client.flushdb(target_nodes=redis.RedisCluster.PRIMARIES)
    yield client
    client.flushdb(target_nodes=redis.RedisCluster.PRIMARIES)
    client.close()


@pytest.fixture(name="cluster_settings")
def _cluster_settings(settings: Settings, cluster_client: redis.RedisCluster,
                      redis_cluster: EmbeddedCluster) -> Settings:
    """The test settings with state on the cluster (``PARLEY_REDIS_CLUSTER``) and the wake-ups on the
    session's standalone Redis (``PARLEY_BROKER_URL``: Celery cannot use a cluster)."""
    return settings.model_copy(update={"redis_url": SecretUrl(redis_cluster.url), "redis_cluster": True,
                                       "broker_url": settings.redis_url})


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def wait_until(predicate: Callable[[], object], *, timeout_s: float, interval_s: float = 0.05,
               message: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)


def open_listeners(base_url: str) -> float:
    """``parley_api_listeners`` from the API's /metrics: event streams and long-polls open in its process (the
    tests' servers share this one, so compare with a value read before)."""
    for line in httpx.get(f"{base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("parley_api_listeners "):
            return float(line.split()[1])
    raise AssertionError("parley_api_listeners is missing from /metrics")


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a child process build the same Settings."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None or name in ("openai_api_key", "api_keys"):
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, dict):
            value = json.dumps(value)
        env[f"PARLEY_{name.upper()}"] = str(value)
    if settings.api_keys:
        env["PARLEY_API_KEYS"] = ",".join(k.get_secret_value() for k in settings.api_keys)
    return env


@pytest.fixture
def api_http() -> Callable[..., httpx.Client]:
    def make(base_url: str, key: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=base_url, headers=headers, timeout=30)

    return make


@pytest.fixture
def api_server(settings: Settings) -> Iterator[str]:
    """The API app served by uvicorn on a loopback port, with the test settings; yields its base URL."""
    from parley.api.main import create_app
    from parley.worker.local.background import BackgroundServer

    with BackgroundServer(create_app(settings)) as server:
        yield server.url
