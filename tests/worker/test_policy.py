"""Pure decisions: retry or give up, backoff, delta coalescing, SDK error translation."""

from __future__ import annotations

import httpx2
import openai
import pytest
from tenacity import RetryCallState, Retrying

from parley.worker.errors import ConversationLocked, PermanentUpstreamError, RetryableUpstreamError, translate
from parley.worker.run.policy import DeltaCoalescer, RetryPolicy

POLICY = RetryPolicy(deadline_s=900, max_crashes=3, backoff_base_s=0.5, backoff_max_s=4.0)


def _status_error(status: int, body: dict[str, object] | None = None,
                  headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://upstream/v1/responses")
    response = httpx2.Response(status, request=request, headers=headers or {}, json=body or {})
    client = openai.OpenAI(api_key="x", base_url="http://upstream/v1")
    return client._make_status_error_from_response(response)


@pytest.mark.parametrize(("status", "code", "expected"), [
    (429, "rate_limit_exceeded", RetryableUpstreamError),
    (429, "insufficient_quota", PermanentUpstreamError),
    (500, None, RetryableUpstreamError),
    (503, None, RetryableUpstreamError),
    (408, None, RetryableUpstreamError),
    (400, "conversation_locked", ConversationLocked),
    (400, "invalid_value", PermanentUpstreamError),
    (401, None, PermanentUpstreamError),
    (403, None, PermanentUpstreamError),
    (404, None, PermanentUpstreamError),
])
def test_translate_status_errors(status: int, code: str | None, expected: type) -> None:
    error = translate(_status_error(status, {"error": {"message": "m", "type": "t", "param": None, "code": code}}))
    assert type(error) is expected and error.status_code == status


def test_retry_after_header_is_read() -> None:
    error = translate(_status_error(429, headers={"retry-after-ms": "250"}))
    assert error.retry_after_s == pytest.approx(0.25)
    assert translate(_status_error(503, headers={"retry-after": "2"})).retry_after_s == 2.0


def test_connection_errors_are_retryable() -> None:
    request = httpx2.Request("POST", "http://upstream/v1/responses")
    assert translate(openai.APIConnectionError(request=request)).reason == "connection"
    assert translate(openai.APITimeoutError(request=request)).reason == "timeout"


@pytest.mark.parametrize(("error", "retry"), [
    (RetryableUpstreamError("x", reason="http_503"), True),
    (ConversationLocked("x", reason="conversation_locked"), True),
    (PermanentUpstreamError("x", reason="http_400"), False),
    (ValueError("bug"), False),
])
def test_should_retry_any_retryable_upstream_error(error: BaseException, retry: bool) -> None:
    """Whether to retry no longer depends on a count of attempts: the deadline stops retries."""
    assert POLICY.should_retry(error) is retry


@pytest.mark.parametrize(("reason", "counted"), [
    ("http_500", True), ("timeout", True), ("stream_ended", True),
    ("rate_limited", False), ("conversation_locked", False), ("circuit_open", False),
])
def test_waits_that_are_not_failures_are_not_counted(reason: str, counted: bool) -> None:
    """A 429, an earlier attempt still running, and an open circuit are waits, not failed attempts."""
    assert POLICY.counts_as_attempt(RetryableUpstreamError("x", reason=reason)) is counted


def test_the_deadline_is_from_the_first_start_and_a_turn_may_only_shorten_it() -> None:
    assert POLICY.deadline(1000.0) == 1900.0
    assert POLICY.deadline(1000.0, asked_s=60) == 1060.0
    assert POLICY.deadline(1000.0, asked_s=5000) == 1900.0
    assert not POLICY.past_deadline(1890.0, 9.0, 1900.0)
    assert POLICY.past_deadline(1890.0, 11.0, 1900.0)


def test_dead_letter_on_start_counts_crashes() -> None:
    """Past PARLEY_MAX_CRASHES deaths of its worker, a turn is dead-lettered when it is picked up again."""
    assert not POLICY.dead_letter_on_start(3)
    assert POLICY.dead_letter_on_start(4)


def _state_with(error: BaseException, attempt: int) -> RetryCallState:
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_wait_honours_retry_after_capped() -> None:
    assert POLICY.wait_s(_state_with(RetryableUpstreamError("x", reason="r", retry_after_s=1.5), 1)) == 1.5
    assert POLICY.wait_s(_state_with(RetryableUpstreamError("x", reason="r", retry_after_s=99), 1)) == 4.0


def test_wait_is_jittered_exponential_and_bounded() -> None:
    waits = [POLICY.wait_s(_state_with(RetryableUpstreamError("x", reason="r"), n)) for n in range(1, 12)]
    assert all(0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) > 1


def test_coalescer_joins_deltas_per_interval() -> None:
    coalescer = DeltaCoalescer(interval_s=0.05)
    assert coalescer.add("a", now=0.0) == "a"
    assert coalescer.add("b", now=0.01) is None
    assert coalescer.add("c", now=0.02) is None
    assert coalescer.add("d", now=0.06) == "bcd"
    assert coalescer.add("e", now=0.07) is None
    assert coalescer.flush(now=0.08) == "e"
    assert coalescer.flush(now=0.09) is None
