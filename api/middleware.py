"""The two layers every request passes: its context (request id, one log line) and the body cap.

Both are plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs the app in a
task group, which wraps an exception raised while the body is read (the cap's) in an ExceptionGroup that
FastAPI then reports as a 400 "error parsing the body".
"""

from __future__ import annotations

import json
import re
import secrets
import time

import anyio
import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.worker import metrics
from parley.worker.log import get_logger

from .errors import envelope

log = get_logger(__name__)

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""What a client's ``x-request-id`` may be to be kept: it goes into every log line and back as a header, so
anything longer or of other characters (spaces, quotes, control bytes) is replaced by a fresh id."""


def request_id_of(given: str) -> str:
    return given if REQUEST_ID.fullmatch(given) else f"req_{secrets.token_hex(8)}"


UNROUTED = "unrouted"


def route_label(scope: Scope) -> str:
    """The route's template (``/v1/turns/{turn_id}``), never the path itself: one series per route, whatever
    ids clients send. A 404, or a request answered before routing (401, 429 rate_limited), is ``unrouted``."""
    route = scope.get("route")
    return str(getattr(route, "path", UNROUTED)) if route is not None else UNROUTED


class RequestContext:
    """Binds ``request_id`` (the client's ``x-request-id`` if well-formed, else a new one) for everything
    logged on the way, returns it as ``x-request-id``, logs one canonical ``request`` line and observes the
    request's duration in ``parley_http_request_seconds`` (the router leaves the matched route in the scope it
    shares with us)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = request_id_of(given)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed_s = time.perf_counter() - started
            route = route_label(scope)
            metrics.REQUEST_SECONDS.labels(route=route, method=scope["method"]).observe(elapsed_s)
            if scope["path"] not in QUIET_PATHS:
                log.info("request", method=scope["method"], path=scope["path"], route=route, status=status,
                         duration_ms=round(elapsed_s * 1000, 2))


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` past the cap; FastAPI passes HTTPExceptions from body reading on to the error
    handlers, which answer 413 in the envelope."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=f"The body is over {max_bytes} bytes.")


class BodyTimeout(HTTPException):
    """The body did not arrive within its deadline (a client sending a byte every few seconds)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(status_code=408, detail=f"The body did not arrive within {timeout_s:g} s.")


class BodyLimit:
    """Counts a body as it arrives: a chunked body (no Content-Length) is cut off at the cap too, before the
    route buffers or parses it and before authentication has looked at the request. The whole body must also
    arrive within ``timeout_s`` of the first read, or the request is answered 408."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        received, deadline, body_done = 0, None, False

        async def limited() -> Message:
            nonlocal received, deadline, body_done
            if body_done:  # later reads only wait for the client to leave (SSE): no deadline for those
                return await receive()
            if deadline is None:
                deadline = anyio.current_time() + self.timeout_s
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise BodyTimeout(self.timeout_s)
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(envelope("body_too_large", f"The body is over {self.max_bytes} bytes.")).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
