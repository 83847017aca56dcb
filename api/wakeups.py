"""The ingress's wake-ups, sent off the event loop so that no request ever waits on the broker.

One sender thread per API process, fed by a bounded queue: ``submit`` only puts a conversation id on the
queue (never blocks, never raises), and the thread publishes. Why a thread and not ``asyncio.to_thread`` per
wake-up: a broker that is down or hangs would then hold one executor thread per request (the default executor
is shared with everything else that runs in threads), and a cap on those in flight needs a queue and a drop
rule anyway. One thread keeps memory and threads bounded whatever the broker does; the order of wake-ups is
irrelevant.

Dropping is safe: the turn is already in its mailbox and its conversation marked ready, so the reaper re-sends
a wake-up once ``hint_retry_s`` has passed (design §3). A drop is counted (``parley_wakeups_dropped_total``)
and logged, at most once per ``LOG_EVERY_S`` while it lasts.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

from celery import Celery

from parley.worker import metrics
from parley.worker.celery_app import DRAIN_TASK, QUEUE
from parley.worker.log import get_logger

log = get_logger(__name__)

MAX_PENDING = 10_000
"""Wake-ups waiting for the sender; past it new ones are dropped (about 1 MB of ids at most)."""
PUBLISH_TIMEOUT_S = 2.0
"""No socket operation of a publish waits longer (see ``create_celery``): one publish to a broker that
accepts connections and never answers gives up in a few of these, instead of holding the sender forever."""
LOG_EVERY_S = 10.0
STOP_TIMEOUT_S = 3.0
"""At shutdown, the wake-ups still queued get this long to go out; the reaper covers the rest."""

_STOP = object()


@dataclass
class Throttle:
    """Counts events and says when to log them: the first one, then at most once per ``every_s``, with how
    many happened since the last line (pure apart from the clock it is given)."""

    every_s: float
    pending: int = 0
    last_at: float = field(default=float("-inf"))

    def hit(self, now: float) -> int:
        """Record one event; the count to log now, or 0 to stay quiet."""
        self.pending += 1
        if now - self.last_at < self.every_s:
            return 0
        count, self.pending, self.last_at = self.pending, 0, now
        return count


class WakeupSender:
    """``submit`` from the event loop, one thread publishes; ``start``/``stop`` with the app's lifespan."""

    def __init__(self, celery: Celery, *, max_pending: int = MAX_PENDING) -> None:
        self.celery = celery
        self.pending: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="parley-wakeups", daemon=True)
        self._full = Throttle(LOG_EVERY_S)
        self._failed = Throttle(LOG_EVERY_S)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, conversation_id: str) -> None:
        """Queue a wake-up for the sender thread; drops it (counted, logged) when the queue is full."""
        try:
            self.pending.put_nowait(conversation_id)
        except queue.Full:
            metrics.WAKEUPS_DROPPED.labels(reason="queue_full").inc()
            if count := self._full.hit(time.monotonic()):
                log.warning("wakeups_dropped", reason="queue_full", count=count,
                            max_pending=self.pending.maxsize)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Send what is queued within ``timeout_s``, then stop; a publish still hanging is left to its
        daemon thread, which dies with the process."""
        if not self._thread.is_alive():
            return
        try:
            self.pending.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (conversation_id := self.pending.get()) is not _STOP:
            self._send(str(conversation_id))

    def _send(self, conversation_id: str) -> None:
        try:
            self.celery.send_task(DRAIN_TASK, args=[conversation_id], queue=QUEUE)
        except Exception as exc:  # noqa: BLE001 - any broker failure is survivable: the reaper re-sends
            metrics.WAKEUPS_DROPPED.labels(reason="broker_error").inc()
            self._failing = True
            if count := self._failed.hit(time.monotonic()):
                log.warning("wakeups_dropped", reason="broker_error", count=count, error=str(exc),
                            conversation_id=conversation_id)
            return
        metrics.WAKEUPS_SENT.inc()
        if self._failing:
            self._failing = False
            log.info("wakeups_resumed", dropped_unlogged=self._failed.pending)
            self._failed = Throttle(LOG_EVERY_S)
