"""The retry loop of one turn: tenacity around its attempts, with the pure decisions of ``policy`` and the
records and events of ``store.mailbox``.

Retryable errors are retried until the turn's deadline; the waits that are not failures (a 429, an earlier
attempt still running upstream, an open circuit) do not count as attempts; each wait publishes
``turn.retrying`` so a bot can show that the turn is still on its way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception

from .. import metrics
from ..errors import DeadlineExceeded, UpstreamError
from ..log import get_logger
from ..messages import Turn
from ..store.mailbox import Mailbox, StartedTurn
from .policy import RetryPolicy
from .shutdown import ShutdownSignal
from .upstream import Reply

log = get_logger(__name__)


def _note_retry(retry_state: RetryCallState) -> None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    metrics.RETRIES.labels(cause=getattr(error, "reason", type(error).__name__)).inc()
    # The provider's own reason, so an operator sees why (a bad network, a rate limit) without a debugger.
    log.info("turn_retry", error=getattr(error, "reason", type(error).__name__),
             status_code=getattr(error, "status_code", None), message=getattr(error, "message", str(error)),
             wait_s=round(retry_state.upcoming_sleep, 2))


def call_with_retries(policy: RetryPolicy, mailbox: Mailbox, shutdown: ShutdownSignal, *, conv: str,
                      token: str, turn: Turn, started: StartedTurn,
                      attempt: Callable[[bool], Reply]) -> Reply:
    """``attempt(needs_check)`` until it returns, a permanent error, or the deadline (``DeadlineExceeded``,
    carrying the last error). ``needs_check``: an earlier attempt may have reached upstream."""
    state = {"attempts": started.attempts, "count_next": False, "past_deadline": False}
    deadline = policy.deadline(turn.started_at or time.time(), turn.deadline_s)

    def retry_wanted(exc: BaseException) -> bool:
        state["count_next"] = policy.counts_as_attempt(exc)
        return policy.should_retry(exc)

    def stop(retry_state: RetryCallState) -> bool:
        state["past_deadline"] = policy.past_deadline(time.time(), retry_state.upcoming_sleep, deadline)
        return bool(state["past_deadline"])

    def before_sleep(retry_state: RetryCallState) -> None:
        _note_retry(retry_state)
        error = retry_state.outcome.exception() if retry_state.outcome else None
        mailbox.publish(conv, token, "turn.retrying", turn_id=turn.id,
                        event_id=f"{turn.id}.retrying.{turn.attempts}.{retry_state.attempt_number}",
                        cause=getattr(error, "reason", type(error).__name__), attempt=turn.attempts,
                        retry_at=round(time.time() + retry_state.upcoming_sleep, 3),
                        message=getattr(error, "message", None))

    try:
        for try_ in Retrying(retry=retry_if_exception(retry_wanted), wait=policy.wait_s, stop=stop,
                             reraise=True, sleep=shutdown.sleep, before_sleep=before_sleep):
            with try_:
                retried = try_.retry_state.attempt_number > 1
                if retried:
                    state["attempts"] = turn.attempts = mailbox.record(
                        conv, turn.id, token, count_attempt=bool(state["count_next"]))
                    structlog.contextvars.bind_contextvars(attempt=turn.attempts)
                # A resumed or retried turn may already have reached upstream (a crash, a hand-back, a
                # timeout).
                return attempt(retried or started.resumed or int(state["attempts"]) > 1
                               or turn.response_id is not None)
    except UpstreamError as exc:
        if state["past_deadline"] and exc.retryable:
            budget_s = deadline - (turn.started_at or deadline)
            raise DeadlineExceeded(
                f"no reply before the turn's deadline ({budget_s:g} s after it started); last error "
                f"{exc.reason}: {exc.message}", reason="deadline_exceeded", status_code=exc.status_code,
                code=exc.code) from exc
        raise
    raise AssertionError("unreachable")  # pragma: no cover
