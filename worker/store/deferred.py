"""Writes a worker process may put off by a few milliseconds, made from one thread in a couple of round trips
per batch instead of one or two per turn (with hundreds of turn threads, every blocking call is another wait
for the GIL):

- copying finished turns' outboxes to the global replies stream (the conversation's own stream and channel are
  written at once by ``finish.lua``; only the global copy waits), and
- taking started turns off the global queued-turns counter the ingress checks its cap against.

Both are repairable: the reaper relays what a crash left in the outboxes and re-counts the queue.
"""

from __future__ import annotations

import threading
import time

import redis

from ..events.replies import relay_many
from ..log import get_logger
from .connections import REDIS_ERRORS
from .keys import Keys

log = get_logger(__name__)


class DeferredWrites:
    def __init__(self, client: redis.Redis, keys: Keys, *, maxlen: int, interval_s: float = 0.02) -> None:
        self.client, self.keys, self.maxlen, self.interval_s = client, keys, maxlen, interval_s
        self._outboxes: set[str] = set()
        self._dequeued = 0
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def relay(self, conversation_id: str) -> None:
        """The conversation's outbox has replies for the replies stream."""
        with self._lock:
            self._outboxes.add(conversation_id)
        self._wake()

    def dequeued(self, count: int = 1) -> None:
        """Queued turns started (a merged batch is several)."""
        with self._lock:
            self._dequeued += count
        self._wake()

    def flush(self) -> None:
        with self._lock:
            outboxes, self._outboxes = self._outboxes, set()
            dequeued, self._dequeued = self._dequeued, 0
        if dequeued:
            self.client.decrby(self.keys.queued_total, dequeued)
        if outboxes:
            relay_many(self.client, self.keys, outboxes, maxlen=self.maxlen)

    def _wake(self) -> None:
        if self._wakeup.is_set():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="parley-deferred", daemon=True)
                self._thread.start()
        self._wakeup.set()

    def _run(self) -> None:
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            time.sleep(self.interval_s)  # let a batch gather
            try:
                self.flush()
            except REDIS_ERRORS as exc:
                # Outboxes stay for the reaper to relay; the reaper also re-counts the queue.
                log.warning("deferred_writes_failed", error=str(exc))
