"""What the client raises: one class per kind of error answer (by HTTP status) and two for transport failures.

    ParleyError
    ├── ParleyAPIError            an error answer: status_code, type, message, param, request_id
    │   ├── InvalidRequestError   400, 413, 422
    │   ├── AuthenticationError   401
    │   ├── PermissionDeniedError 403 (the key lacks the route's scope)
    │   ├── NotFoundError         404
    │   ├── ConflictError         409
    │   ├── RateLimitError        429 (retried; retry_after_s)
    │   ├── InternalServerError   500 and other 5xx
    │   └── UnavailableError      503 (retried; retry_after_s)
    └── ParleyConnectionError     no answer (also an httpx.TransportError)
        └── ParleyTimeoutError    no answer in time, or a stream idle for idle_timeout_s
"""

from __future__ import annotations

from typing import Any

import httpx

REQUEST_ID_HEADER = "x-request-id"


class ParleyError(Exception):
    """Anything the client raises on purpose."""


class ParleyAPIError(ParleyError):
    """An error answer of the API, from its ``{"error": {"type", "message", "param"?}}`` envelope."""

    def __init__(self, status_code: int, type_: str, message: str, param: str | None = None, *,
                 request_id: str | None = None, retry_after_s: float | None = None) -> None:
        where = f" (request {request_id})" if request_id else ""
        super().__init__(f"{status_code} {type_}: {message}{where}")
        self.status_code = status_code
        self.type = type_
        self.message = message
        self.param = param
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        """The answer's ``Retry-After`` in seconds, when it had one."""


class InvalidRequestError(ParleyAPIError):
    """400 (bad JSON, bad Last-Event-ID), 413 (body or input too large), 422 (a field is invalid)."""


class AuthenticationError(ParleyAPIError):
    """401: a missing or unknown API key."""


class PermissionDeniedError(ParleyAPIError):
    """403: the key is valid but lacks the scope the route needs."""


class NotFoundError(ParleyAPIError):
    """404: no such conversation, turn or item."""


class ConflictError(ParleyAPIError):
    """409: e.g. cancelling a turn that already runs, or a turn posted to a busy conversation whose policy is
    ``double_texting: reject`` (``type`` ``conversation_busy``)."""


class RateLimitError(ParleyAPIError):
    """429: the conversation's mailbox is full or parley is overloaded; retried honouring ``Retry-After``."""


class InternalServerError(ParleyAPIError):
    """500 and 5xx other than 503."""


class UnavailableError(ParleyAPIError):
    """503: parley's Redis is unreachable for a moment; retried honouring ``Retry-After``."""


# Also an httpx.TransportError so code written against the plain httpx client (``except httpx.HTTPError``,
# as ``parley send`` does) keeps catching "could not reach parley".
class ParleyConnectionError(ParleyError, httpx.TransportError):
    """No answer: the connection could not be made or broke off."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent
        """Whether the request may have reached the server (False: refused or never connected)."""


class ParleyTimeoutError(ParleyConnectionError):
    """No answer in time, or an event stream with nothing but pings for ``idle_timeout_s``."""


_BY_STATUS: dict[int, type[ParleyAPIError]] = {
    400: InvalidRequestError, 413: InvalidRequestError, 422: InvalidRequestError, 401: AuthenticationError,
    403: PermissionDeniedError, 404: NotFoundError, 409: ConflictError, 429: RateLimitError,
    503: UnavailableError,
}


def _retry_after_s(response: httpx.Response) -> float | None:
    # parley sends delta-seconds; an HTTP-date (allowed by RFC 9110) is left to the client's own backoff.
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def api_error(response: httpx.Response) -> ParleyAPIError:
    """The typed error for an error answer (its body must have been read)."""
    try:
        error: Any = response.json()["error"]
        type_, message, param = str(error["type"]), str(error.get("message", "")), error.get("param")
    except (ValueError, KeyError, TypeError):  # not parley's envelope, e.g. a proxy's error page
        type_, message, param = "http_error", response.text[:200], None
    status = response.status_code
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else ParleyAPIError)
    return cls(status, type_, message, param, request_id=response.headers.get(REQUEST_ID_HEADER),
               retry_after_s=_retry_after_s(response))


def transport_error(exc: httpx.TransportError) -> ParleyConnectionError:
    # A refused or never-opened connection carried nothing: safe to send again whatever the request was.
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    cls = ParleyTimeoutError if isinstance(exc, httpx.TimeoutException) else ParleyConnectionError
    error = cls(f"{type(exc).__name__}: {exc}", sent=sent)
    error.__cause__ = exc
    return error
