"""Pure decisions, no I/O: backoff, retry until the deadline or give up, dead-lettering, delta coalescing."""

from __future__ import annotations

from dataclasses import dataclass, field

from tenacity import RetryCallState, wait_random_exponential

from ..errors import UpstreamError

UNCOUNTED_REASONS = frozenset({"conversation_locked", "rate_limited", "circuit_open"})
"""Waits that are not failed attempts: an earlier attempt still running upstream, a 429 (the provider said
when to come back), and the shared circuit being open (nobody called upstream)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retryable upstream errors are retried until the turn's deadline (a budget in time, as outages and
    rate-limit waves last minutes, not a count of attempts); crashes (a worker died holding the turn) are
    counted on their own, so a turn that kills its worker is still dead-lettered quickly."""

    deadline_s: float
    max_crashes: int
    backoff_base_s: float
    backoff_max_s: float

    def deadline(self, started_at: float, asked_s: float | None = None) -> float:
        """When retrying stops: the turn's first start plus its budget (``asked_s`` may only shorten it)."""
        budget = self.deadline_s if asked_s is None else min(asked_s, self.deadline_s)
        return started_at + budget

    def dead_letter_on_start(self, crashes: int) -> bool:
        """A turn whose workers died ``crashes`` times while running it is a poison turn past the cap."""
        return crashes > self.max_crashes

    @staticmethod
    def should_retry(error: BaseException) -> bool:
        return isinstance(error, UpstreamError) and error.retryable

    @staticmethod
    def counts_as_attempt(error: BaseException) -> bool:
        return getattr(error, "reason", None) not in UNCOUNTED_REASONS

    @staticmethod
    def past_deadline(now: float, wait_s: float, deadline: float) -> bool:
        """Whether the next attempt, ``wait_s`` from ``now``, would start after the deadline."""
        return now + wait_s > deadline

    def wait_s(self, retry_state: RetryCallState) -> float:
        """tenacity ``wait``: the server's Retry-After when it gave one, else full-jitter exponential."""
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, UpstreamError) and error.retry_after_s is not None:
            return min(error.retry_after_s, self.backoff_max_s)
        jitter = wait_random_exponential(multiplier=self.backoff_base_s, max=self.backoff_max_s)
        return float(jitter(retry_state))


@dataclass
class DeltaCoalescer:
    """Joins streamed deltas so a long reply publishes at most one event per ``interval_s``."""

    interval_s: float
    _pending: list[str] = field(default_factory=list)
    _last_flush: float = float("-inf")

    def add(self, delta: str, now: float) -> str | None:
        """Buffer ``delta``; return the joined text when it is time to publish."""
        self._pending.append(delta)
        if now - self._last_flush >= self.interval_s:
            return self._take(now)
        return None

    def flush(self, now: float) -> str | None:
        return self._take(now) if self._pending else None

    def _take(self, now: float) -> str:
        text = "".join(self._pending)
        self._pending.clear()
        self._last_flush = now
        return text
