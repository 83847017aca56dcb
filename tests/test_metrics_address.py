"""The Prometheus endpoints of a worker and of a webhook dispatcher bind loopback unless told otherwise, and
deploy/ tells them otherwise where Prometheus scrapes pod IPs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import settings_env, wait_until
from pydantic import SecretStr
from stack import start_worker, wait_ready

from parley.worker.local.background import free_port
from parley.worker.local.processes import spawn, stop
from parley.worker.settings import Settings
from parley.worker.webhooks.signing import generate_secret

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def listening(port: int) -> set[str]:
    """The addresses a TCP socket of this machine listens on at ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.fixture(autouse=True)
def _linux() -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads the listening sockets from /proc/net/tcp")


@contextmanager
def dispatcher(settings: Settings, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn(["python", "-m", "parley", "webhooks", "run"], env={**settings_env(settings), **env}, quiet=True)
    try:
        yield proc
    finally:
        stop(proc)


@pytest.mark.parametrize(("env", "address"), [({}, "127.0.0.1"),
                                              ({"PARLEY_WEBHOOK_METRICS_ADDRESS": "0.0.0.0"}, "0.0.0.0")])
def test_the_dispatchers_metrics_bind_loopback_unless_set(settings: Settings, env: dict[str, str],
                                                          address: str) -> None:
    """``parley webhooks run`` with no address setting listens on 127.0.0.1 only."""
    port = free_port()
    hooks = settings.model_copy(update={"webhook_secret": SecretStr(generate_secret()),
                                        "webhook_metrics_port": port})
    with dispatcher(hooks, **env):
        wait_until(lambda: listening(port), timeout_s=30, message="the dispatcher's metrics port")
        assert listening(port) == {address}


@pytest.mark.slow
@pytest.mark.parametrize(("env", "address"), [({}, "127.0.0.1"),
                                              ({"PARLEY_WORKER_METRICS_ADDRESS": "0.0.0.0"}, "0.0.0.0")])
def test_a_workers_metrics_bind_loopback_unless_set(settings: Settings, env: dict[str, str],
                                                    address: str) -> None:
    """A real Celery worker with no address setting listens on 127.0.0.1 only."""
    port = free_port()
    proc = start_worker(settings.model_copy(update={"worker_metrics_port": port}), "m0", concurrency=2,
                        extra_env=env)
    try:
        wait_ready(settings, ["m0"])
        wait_until(lambda: listening(port), timeout_s=30, message="the worker's metrics port")
        assert listening(port) == {address}
    finally:
        stop(proc)


def test_deploy_binds_the_scraped_metrics_on_every_address() -> None:
    """Kubernetes probes and scrapes pod IPs, so the worker and dispatcher Deployments set 0.0.0.0; so does the
    compose worker, which the monitoring profile's Prometheus scrapes by service name."""
    def env_of(name: str) -> dict[str, str]:
        [doc] = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "base" / name).read_text()) if d]
        [container] = doc["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e["value"] for e in container.get("env", [])}

    assert env_of("worker.yaml")["PARLEY_WORKER_METRICS_ADDRESS"] == "0.0.0.0"
    assert env_of("webhooks.yaml")["PARLEY_WEBHOOK_METRICS_ADDRESS"] == "0.0.0.0"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["worker"]["environment"]["PARLEY_WORKER_METRICS_ADDRESS"] == "0.0.0.0"
