"""One worker process's view of the shared upstream health, per model (the circuit breaker).

Calls report their outcome to local counters; a background thread sends the counts to Redis a few times a
second (``store/lua/circuit.lua`` decides there, for every process at once) and keeps the state it gets
back. So the hot path costs no round trip: a turn asks :meth:`Circuit.gate` before it calls upstream and
waits, uncounted, while the circuit is open. Half-open (the first window after a cool-down), each process
lets one call through per probe interval, so a recovering provider is not hit by every waiting turn at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis
from prometheus_client import Gauge

from ..log import get_logger
from ..settings import Settings
from ..store import scripts
from ..store.connections import REDIS_ERRORS
from ..store.keys import Keys

log = get_logger(__name__)

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}
CIRCUIT_STATE = Gauge("parley_upstream_circuit_state",
                      "Shared upstream circuit per model as this process last saw it: 0 closed, 1 half-open, "
                      "2 open.", ["model"], multiprocess_mode="max")


@dataclass
class _Model:
    ok: int = 0
    failed: int = 0
    state: int = CLOSED
    open_until: float = 0.0
    """Monotonic time the circuit half-opens, when open."""
    last_probe: float = float("-inf")
    last_call: float = float("-inf")
    """When a turn last asked to call this model: until a window has passed, the process keeps learning the
    shared state even without counts of its own, so it backs off when others see the failures."""


class Circuit:
    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, *, interval_s: float = 0.25,
                 probe_interval_s: float = 0.5) -> None:
        self.client, self.keys, self.settings = client, keys, settings
        self.interval_s, self.probe_interval_s = interval_s, probe_interval_s
        self._models: dict[str, _Model] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def gate(self, model: str) -> float:
        """Seconds to wait before calling ``model`` (0: call now)."""
        now = time.monotonic()
        self._start()
        with self._lock:
            entry = self._entry(model)
            entry.last_call = now
            if entry.state == OPEN and now < entry.open_until:
                return entry.open_until - now
            if entry.state in (OPEN, HALF_OPEN):  # open, but its cool-down is over: probe
                since = now - entry.last_probe
                if since < self.probe_interval_s:
                    return self.probe_interval_s - since
                entry.last_probe = now
        return 0.0

    def record(self, model: str, *, ok: bool) -> None:
        with self._lock:
            entry = self._entry(model)
            if ok:
                entry.ok += 1
            else:
                entry.failed += 1
        self._start()

    def _entry(self, model: str) -> _Model:
        entry = self._models.get(model)
        if entry is None:
            entry = self._models[model] = _Model()
        return entry

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="parley-circuit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            try:
                if not self.sync():
                    with self._lock:  # nothing to say: stop until the next call's record() starts us again
                        if not self._pending():
                            self._thread = None
                            return
            except REDIS_ERRORS as exc:  # the counts stay and go with the next report
                log.warning("circuit_report_failed", error=str(exc))

    def _pending(self) -> dict[str, tuple[int, int]]:
        """Models with counts to report, called lately, or whose circuit is not closed (its end must be
        learnt)."""
        recent = time.monotonic() - self.settings.circuit_window_s
        return {name: (e.ok, e.failed) for name, e in self._models.items()
                if e.ok or e.failed or e.state != CLOSED or e.last_call > recent}

    def sync(self) -> bool:
        """Report the counts since the last report and take the shared state back; ``False`` when there was
        nothing to report (a closed circuit no turn called lately: no round trip)."""
        with self._lock:
            batch = self._pending()
        s = self.settings
        for model, (ok, failed) in batch.items():
            keys = [self.keys.upstream_health(model), self.keys.upstream_models]
            state, ms = scripts.CIRCUIT(self.client, keys, [
                model, ok, failed, int(s.circuit_window_s * 1000), s.circuit_min_calls,
                s.circuit_failure_ratio, int(s.circuit_cooldown_s * 1000),
                int(s.circuit_cooldown_max_s * 1000)])
            with self._lock:
                entry = self._models[model]
                entry.ok -= ok
                entry.failed -= failed
                if int(state) != entry.state:
                    log.warning("upstream_circuit", model=model, state=STATE_NAMES[int(state)],
                                open_for_ms=int(ms))
                entry.state, entry.open_until = int(state), time.monotonic() + int(ms) / 1000
            CIRCUIT_STATE.labels(model=model).set(int(state))
        return bool(batch)
