"""parley's exception tree, split by what the caller does next, and the translation of SDK errors into it."""

from __future__ import annotations

from typing import Any

import httpx2
import openai

from .log import redact_text


class ParleyError(Exception):
    """Root of parley's own errors."""


class LeaseLost(ParleyError):
    """This worker no longer owns the conversation (its lease expired); stop without recording anything."""


class UpstreamError(ParleyError):
    """An upstream call failed. ``retryable`` says whether trying again may succeed."""

    retryable = True

    def __init__(self, message: str, *, reason: str, status_code: int | None = None, code: str | None = None,
                 retry_after_s: float | None = None, request_id: str | None = None) -> None:
        # Stored in the turn, its events and the replies stream, readable by any key: mask what a provider or
        # a proxy may have echoed of ours.
        message = redact_text(message)
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status_code = status_code
        self.code = code
        self.retry_after_s = retry_after_s
        self.request_id = request_id

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} reason={self.reason} status={self.status_code} code={self.code} "
                f"retry_after_s={self.retry_after_s}>")


class RetryableUpstreamError(UpstreamError):
    """429, 5xx, timeouts, dropped connections, a stream that ended early, a failed response."""


class ConversationLocked(RetryableUpstreamError):
    """An earlier attempt's response is still running upstream: wait, re-check, and don't count an attempt."""


class CircuitOpen(RetryableUpstreamError):
    """Most recent calls to this model failed, across all workers: wait with them instead of calling."""


class DeadlineExceeded(RetryableUpstreamError):
    """Retryable errors went on until the turn's deadline. Retryable in kind: the turn is dead-lettered, so an
    operator can requeue it once the provider is back."""


class PermanentUpstreamError(UpstreamError):
    """400/401/403/404/422: trying again cannot help; the turn fails and the conversation moves on."""

    retryable = False


def _retry_after_s(headers: httpx2.Headers) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


def upstream_message(exc: openai.APIStatusError) -> str:
    """The provider's own sentence (``error.message`` of its body) rather than the SDK's
    "Error code: 401 - {...}" dump, with anything that looks like a key masked: a provider or proxy may echo
    the Authorization header."""
    body: Any = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    return redact_text(str(message or exc.message))


def _transport_message(exc: Exception) -> str:
    cause = exc.__cause__ or exc.__context__
    detail = f"{exc}: {cause}" if cause is not None and str(cause) not in str(exc) else str(exc)
    return redact_text(detail)


def translate(exc: Exception) -> UpstreamError:
    """Map an SDK or transport exception to parley's tree (call as ``raise translate(e) from e``)."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        status, code, message = exc.status_code, exc.code, upstream_message(exc)
        common = {"status_code": status, "code": code, "request_id": exc.request_id}
        if code == "conversation_locked":
            return ConversationLocked(message, reason="conversation_locked", **common)
        if status in (401, 403):
            # A wrong or revoked key, or a project without access: no retry can help, and the operator must
            # hear it as that, not as "unavailable, retry shortly".
            return PermanentUpstreamError(message, reason="upstream_auth_failed", **common)
        if status == 429 and code == "insufficient_quota":
            return PermanentUpstreamError(message, reason="upstream_quota_exceeded", **common)
        if status == 429:
            return RetryableUpstreamError(message, reason="rate_limited",
                                          retry_after_s=_retry_after_s(exc.response.headers), **common)
        if status in (408, 409) or status >= 500:
            return RetryableUpstreamError(message, reason=f"http_{status}",
                                          retry_after_s=_retry_after_s(exc.response.headers), **common)
        return PermanentUpstreamError(message, reason=f"http_{status}", **common)
    if isinstance(exc, openai.APITimeoutError):
        return RetryableUpstreamError(_transport_message(exc), reason="timeout")
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return RetryableUpstreamError(_transport_message(exc), reason="connection")
    raise exc
