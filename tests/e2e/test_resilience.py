"""Upstream trouble with real processes: an outage in the middle of a run (API, two Celery workers, beat, the
emulator through the real SDK), ridden out by every turn with the shared circuit."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from conftest import wait_until
from stack import start_beat, workers

from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow

OUTAGE_S = float(os.environ.get("PARLEY_TEST_OUTAGE_S", "8"))
"""The acceptance run is 60 s (``PARLEY_TEST_OUTAGE_S=60``); CI runs a shorter outage."""


def test_an_upstream_outage_is_ridden_out_by_every_turn(settings: Settings, emulator: EmulatorServer,
                                                        redis_client: redis.Redis) -> None:
    """Every upstream call answers 503 for OUTAGE_S in the middle of a run: no turn fails; each turn that waited
    published ``turn.retrying`` (some with cause ``circuit_open``, once the workers saw most calls fail); the
    API's /metrics showed the circuit open during the outage and closed after; every conversation's items are
    in order, each user message once."""
    resilient = settings.model_copy(update={
        "circuit_breaker": True, "circuit_min_calls": 10, "circuit_window_s": 5.0, "circuit_cooldown_s": 1.0,
        "circuit_cooldown_max_s": 4.0, "backoff_max_s": 2.0, "turn_deadline_s": OUTAGE_S + 120})
    emulator.config.latency_ms = (20, 60)
    emulator.config.retry_after_s = 0.5
    conversations, turns = 20, 4
    with BackgroundServer(create_app(resilient)) as api, httpx.Client(base_url=api.url, timeout=30) as http, \
            workers(resilient, 2, concurrency=20), start_beat(resilient):
        convs = [http.post("/v1/conversations", json={}).json()["id"] for _ in range(conversations)]

        def post(conv: str, n: int) -> str:
            response = http.post(f"/v1/conversations/{conv}/turns", json={"input": f"{conv[-6:]}-{n}"})
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        with ThreadPoolExecutor(8) as pool:
            first = list(pool.map(lambda c: post(c, 0), convs))
        wait_until(lambda: all(http.get(f"/v1/turns/{t}").json()["status"] == "completed" for t in first),
                   timeout_s=60, message="the turns before the outage")
        emulator.config.p_503 = 1.0
        outage_over = threading.Timer(OUTAGE_S, lambda: setattr(emulator.config, "p_503", 0.0))
        outage_over.start()
        with ThreadPoolExecutor(8) as pool:
            during = list(pool.map(lambda cn: post(*cn), [(c, n) for n in range(1, turns) for c in convs]))
        open_seen = _circuit_open_seen(http, resilient.model, until=time.monotonic() + OUTAGE_S - 1)
        outage_over.join()
        wait_until(lambda: all(http.get(f"/v1/turns/{t}").json()["status"] in ("completed", "failed")
                               for t in during), timeout_s=OUTAGE_S + 120, message="every turn's end")
        statuses = {t: http.get(f"/v1/turns/{t}").json()["status"] for t in during}
        closed_after = _circuit_gauge(http, resilient.model) == 0.0
    assert set(statuses.values()) == {"completed"}, [s for s in statuses.values() if s != "completed"][:3]
    assert open_seen and closed_after
    events = {conv: [json.loads(f["data"]) for _, f in redis_client.xrange(Keys().events(conv))] for conv in convs}
    retried = {e["turn_id"] for evs in events.values() for e in evs if e["type"] == "turn.retrying"}
    causes = {e["cause"] for evs in events.values() for e in evs if e["type"] == "turn.retrying"}
    # Each conversation's first waiting turn waited (the ones behind it wait in the mailbox, not upstream).
    assert {next(t for t in during if t.endswith(conv)) for conv in convs} <= retried
    assert "circuit_open" in causes and "http_503" in causes
    for conv in convs:
        users = [("".join(p["text"] for p in i["content"])) for i in emulator.store.snapshot_items(conv)
                 if i["role"] == "user"]
        assert users == [f"{conv[-6:]}-{n}" for n in range(turns)]


def _circuit_gauge(http: httpx.Client, model: str) -> float | None:
    text = http.get("/metrics").text
    match = re.search(rf'^parley_upstream_circuit_open{{model="{re.escape(model)}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def _circuit_open_seen(http: httpx.Client, model: str, *, until: float) -> bool:
    while time.monotonic() < until:
        if _circuit_gauge(http, model) == 1.0:
            return True
        time.sleep(0.2)
    return False
