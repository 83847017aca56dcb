"""The ingress never waits on the broker: wake-ups go through one sender thread with a bounded queue, a broker
that accepts connections and never answers costs that thread seconds per wake-up (not forever) and the
requests nothing; request durations are on /metrics by route template."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from celery import Celery
from prometheus_client import REGISTRY
from pydantic import SecretStr

from parley.api.wakeups import Throttle, WakeupSender
from parley.worker.celery_app import create_celery
from parley.worker.settings import Settings


class BlackHole:
    """A TCP server that accepts every connection and never sends a byte: a broker hung mid-failover, or a
    firewall that drops replies."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(name="black_hole")
def _black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("parley_wakeups_dropped_total", {"reason": reason}) or 0.0


def test_throttle_logs_the_first_event_then_once_per_interval_with_the_count() -> None:
    """The first drop is logged at once; later ones within the interval are only counted, and the next line
    carries how many there were."""
    throttle = Throttle(every_s=10)
    assert throttle.hit(100.0) == 1
    assert [throttle.hit(t) for t in (101.0, 105.0, 109.9)] == [0, 0, 0]
    assert throttle.hit(110.0) == 4


def test_a_full_queue_drops_wakeups_without_blocking() -> None:
    """With the sender not draining (as when its publish hangs), submit never blocks: past ``max_pending``
    wake-ups are dropped and counted as queue_full."""
    sender = WakeupSender(Celery(broker="redis://127.0.0.1:1/0"), max_pending=2)
    before = dropped("queue_full")
    started = time.perf_counter()
    for n in range(5):
        sender.submit(f"conv_{n}")
    assert time.perf_counter() - started < 0.05
    assert dropped("queue_full") - before == 3 and sender.pending.qsize() == 2


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_a_broker_that_never_answers_costs_the_sender_seconds_not_forever(black_hole: BlackHole,
                                                                         scheme: str) -> None:
    """Real kombu against a socket that never answers: every publish gives up within a few publish timeouts
    and the sender moves on to the next wake-up (without the timeouts, the first publish hangs forever)."""
    url = (f"redis://127.0.0.1:{black_hole.port}/0" if scheme == "redis"
           else f"amqp://guest:guest@127.0.0.1:{black_hole.port}//")
    settings = Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0", broker_url=SecretStr(url))
    sender = WakeupSender(create_celery(settings, publish_timeout_s=0.3))
    before = dropped("broker_error")
    sender.start()
    started = time.monotonic()
    for n in range(3):
        sender.submit(f"conv_{n}")
    deadline = started + 3 * 4 * 0.3 + 3
    while dropped("broker_error") - before < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dropped("broker_error") - before == 3, f"only {dropped('broker_error') - before} of 3 gave up"
    sender.stop(timeout_s=2)


@pytest.fixture(name="black_hole_settings")
def _black_hole_settings(settings: Settings, black_hole: BlackHole) -> Settings:
    return settings.model_copy(update={"broker_url": SecretStr(f"redis://127.0.0.1:{black_hole.port}/0")})


def test_posts_answer_fast_while_the_broker_hangs_and_metrics_show_their_duration(
        black_hole_settings: Settings, api_http: Callable[..., httpx.Client]) -> None:
    """The API's broker accepts and never answers: 40 POST …/turns (each a wake-up) all get 202 with p99 under
    100 ms, and /metrics has their durations under the route's template, never under a path with an id."""
    from parley.api.main import create_app
    from parley.worker.local.background import BackgroundServer

    route = "/v1/conversations/{conversation_id}/turns"
    labels = {"method": "POST", "route": route}
    before = REGISTRY.get_sample_value("parley_http_request_seconds_count", labels) or 0.0
    with BackgroundServer(create_app(black_hole_settings)) as server, api_http(server.url) as http:
        convs = [http.post("/v1/conversations", json={}).json()["id"] for _ in range(40)]
        durations = []
        for conv in convs:
            started = time.perf_counter()
            response = http.post(f"/v1/conversations/{conv}/turns", json={"input": "hi"})
            durations.append(time.perf_counter() - started)
            assert response.status_code == 202, response.text
        time.sleep(0.05)  # the last request's duration is observed just after its response went out
        body = http.get("/metrics").text
    p99 = sorted(durations)[round(0.99 * (len(durations) - 1))]
    assert p99 < 0.1, f"p99 {p99 * 1000:.1f} ms with a hanging broker"
    count = f'parley_http_request_seconds_count{{method="POST",route="{route}"}}'
    [line] = [line for line in body.splitlines() if line.startswith(count)]
    assert float(line.split()[-1]) - before == 40
    assert convs[0] not in body
