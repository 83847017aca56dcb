"""Pure decisions, no I/O: backoff, retry or give up, dead-lettering, delta coalescing."""

from __future__ import annotations

from dataclasses import dataclass, field

from tenacity import RetryCallState, wait_random_exponential

from ..errors import ConversationLocked, UpstreamError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float

    def exhausted(self, attempts: int) -> bool:
        """A turn that has been tried ``attempts`` times may not be tried again."""
        return attempts >= self.max_attempts

    def dead_letter_on_start(self, attempts: int) -> bool:
        """A turn picked up for its ``attempts``-th time (crash loops count) is past the cap."""
        return attempts > self.max_attempts

    def should_retry(self, error: BaseException, attempts: int) -> bool:
        if not isinstance(error, UpstreamError) or not error.retryable:
            return False
        # Waiting for an earlier attempt that still runs upstream is not a new attempt.
        return isinstance(error, ConversationLocked) or not self.exhausted(attempts)

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
