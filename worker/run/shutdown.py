"""Graceful shutdown: stop taking turns at once, let running turns finish within a grace period, then hand the
rest back to the head of their conversations so another worker resumes them without waiting for a lease to
expire.
"""

from __future__ import annotations

import threading
import time

from ..errors import ParleyError


class HandBack(ParleyError):
    """The worker is shutting down and the grace period is over: give the turn back, unfinished."""


class ShutdownSignal:
    def __init__(self) -> None:
        self._requested = threading.Event()
        self._deadline = float("inf")

    def request(self, grace_s: float) -> None:
        self._deadline = min(self._deadline, time.monotonic() + grace_s)
        self._requested.set()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def check(self) -> None:
        """Raise ``HandBack`` once the grace period is over."""
        if self._requested.is_set() and time.monotonic() >= self._deadline:
            raise HandBack("grace period over")

    def sleep(self, seconds: float) -> None:
        """tenacity ``sleep``: wait, but not past the grace period."""
        remaining = self._deadline - time.monotonic()
        time.sleep(max(0.0, min(seconds, remaining)))
        self.check()
