"""Pure decisions: retry or give up, backoff, delta coalescing, SDK error translation."""

from __future__ import annotations

import httpx2
import openai
import pytest
from tenacity import RetryCallState, Retrying

from parley.worker.errors import ConversationLocked, PermanentUpstreamError, RetryableUpstreamError, translate
from parley.worker.run.policy import DeltaCoalescer, RetryPolicy

POLICY = RetryPolicy(max_attempts=3, backoff_base_s=0.5, backoff_max_s=4.0)


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


@pytest.mark.parametrize(("attempts", "error", "retry"), [
    (1, RetryableUpstreamError("x", reason="r"), True),
    (2, RetryableUpstreamError("x", reason="r"), True),
    (3, RetryableUpstreamError("x", reason="r"), False),
    (9, ConversationLocked("x", reason="conversation_locked"), True),
    (1, PermanentUpstreamError("x", reason="http_400"), False),
    (1, ValueError("bug"), False),
])
def test_should_retry(attempts: int, error: BaseException, retry: bool) -> None:
    assert POLICY.should_retry(error, attempts) is retry


def test_dead_letter_on_start_counts_crash_loops() -> None:
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
