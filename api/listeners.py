"""Listeners (SSE streams, long-polls) of one API process: their subscriptions to the fan-out hub, and a cap.

They share the hub's one Redis connection (``fanout.py``), so the cap is no longer about Redis clients but
about memory: each listener holds an HTTP connection, a task and a bounded queue of events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from parley.worker.metrics import LISTENERS

from .errors import ApiError
from .fanout import Hub, Subscription

RETRY_AFTER_S = 5


class Listeners:
    def __init__(self, hub: Hub, *, limit: int) -> None:
        self.hub = hub
        self.limit = limit
        self.open = 0

    def check(self) -> None:
        """503 ``too_many_listeners`` when the process serves its cap. Asked before a response starts; the
        subscription itself is made by the stream once it runs, so one that never runs holds nothing."""
        if self.open >= self.limit:
            raise ApiError(503, "too_many_listeners", f"This API process already serves {self.limit} event "
                           "streams and long-polls; retry shortly or use another process.",
                           headers={"Retry-After": str(RETRY_AFTER_S)})

    def reading(self) -> asyncio.Semaphore:
        """Held around the Redis reads a listener makes before it streams (``async with``): see
        ``fanout.READ_SLOTS``."""
        return self.hub.read_slots

    @asynccontextmanager
    async def subscribe(self, conversation_id: str, *, after_seq: int) -> AsyncIterator[Subscription]:
        """A subscription to the conversation's events after ``after_seq``, counted while it is open."""
        subscription = self.hub.subscribe(conversation_id, after_seq=after_seq)
        self.open += 1  # one event loop per process: no lock needed
        LISTENERS.inc()
        try:
            yield subscription
        finally:
            # Synchronous, so it also runs to the end while the listener's task is being cancelled.
            subscription.close()
            self.open -= 1
            LISTENERS.dec()
