"""One heartbeat thread per worker process renews the leases of every conversation the process owns.

A thread per drain task would double the thread count; one script call per held lease per interval is enough.
"""

from __future__ import annotations

import threading

import redis

from ..log import get_logger
from . import scripts
from .connections import REDIS_ERRORS
from .keys import Keys

log = get_logger(__name__)


class LeaseKeeper:
    def __init__(self, client: redis.Redis, keys: Keys, *, ttl_ms: int, interval_ms: int) -> None:
        self.client = client
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.interval_s = interval_ms / 1000
        self._held: dict[str, str] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, conversation_id: str, token: str) -> None:
        with self._lock:
            self._held[conversation_id] = token
            self._lost.discard(conversation_id)
        self._ensure_running()

    def drop(self, conversation_id: str) -> None:
        with self._lock:
            self._held.pop(conversation_id, None)
            self._lost.discard(conversation_id)

    def lost(self, conversation_id: str) -> bool:
        with self._lock:
            return conversation_id in self._lost

    def held(self) -> dict[str, str]:
        with self._lock:
            return dict(self._held)

    def _ensure_running(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="parley-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except REDIS_ERRORS as exc:
                # The lease TTL is several intervals long: one missed beat is survivable, so keep going.
                log.warning("heartbeat_failed", error=str(exc))

    def beat(self) -> None:
        held = self.held()
        if not held:
            return
        # One round trip for all of them: the beat runs beside hundreds of turn threads.
        results = dict(zip(held, scripts.HEARTBEAT.pipelined(
            self.client, [([self.keys.lease(conv)], [token, self.ttl_ms]) for conv, token in held.items()]),
            strict=True))
        with self._lock:
            for conv, extended in results.items():
                if not extended and self._held.get(conv) == held[conv]:
                    self._lost.add(conv)
                    log.warning("lease_lost", conversation_id=conv)
