"""One error envelope for every 4xx/5xx: ``{"error": {"type", "message", "param"?}}``."""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from parley.worker.log import get_logger

from .validation import clip, explain

log = get_logger(__name__)

REDIS_RETRY_AFTER_S = 2


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.param = param
        self.headers = headers or {}


def envelope(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if param is not None:
        error["param"] = param
    return {"error": error}


async def send_error(send: Send, status: int, type_: str, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer in the envelope from plain ASGI middleware (before any route runs)."""
    body = json.dumps(envelope(type_, message)).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"No {what} with id {clip(ident)!r}.", param="id")


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(envelope(exc.type, exc.message, exc.param), status_code=exc.status,
                        headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return JSONResponse(envelope("invalid_json", "The request body is not valid JSON."), status_code=400)
    try:
        message, param = explain(exc.errors(), exc.body, request.headers.get("content-type"))
    except Exception:  # noqa: BLE001 - a bad sentence must never turn a 422 into a 500
        log.exception("validation_message_failed")
        message, param = str(first.get("msg", "The request is invalid.")), None
    return JSONResponse(envelope("invalid_request", message, param), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kinds = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 408: "body_timeout",
             413: "body_too_large"}
    return JSONResponse(envelope(kinds.get(exc.status_code, "http_error"), str(exc.detail)),
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


PASSING_REDIS_ERRORS = ("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "OOM",
                        "NOREPLICAS")
"""Error replies of a Redis that is restarting, failing over or full: they pass, so 503 + Retry-After is
true."""


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, redis.ResponseError) and not str(exc).startswith(PASSING_REDIS_ERRORS):
        # A script error or a wrong-type reply fails the same way every time: a client told "retry shortly"
        # would retry it forever.
        return await _crash(request, exc)
    log.warning("redis_unavailable", error=str(exc))
    return JSONResponse(envelope("unavailable", "The queue is temporarily unavailable; retry shortly."),
                        status_code=503, headers={"Retry-After": str(REDIS_RETRY_AFTER_S)})


REDIS_CLIENT_DIR = os.path.dirname(redis.__file__) + os.sep


def raised_in_redis_client(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``None`` attribute that broke inside redis-py itself.

    redis-py's asyncio cluster client answers a connection error or CLUSTERDOWN in one pipeline by closing
    every node's connections, in-flight ones included, so a concurrent command finds its writer gone
    (``'NoneType' object has no attribute 'writelines'``, or asyncio's "unable to perform operation on
    <TCPTransport closed=True>"). That request failed because Redis wobbled, not
    because of a bug in parley: it is a 503 to retry, like the error that began it."""
    if exc.__traceback__ is None:
        return False
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    if isinstance(exc, AttributeError | TypeError):
        return frames[-1].startswith(REDIS_CLIENT_DIR)
    # The same cascade met one step later: asyncio refuses to write on the transport it closed
    # ("unable to perform operation on <TCPTransport closed=True ...>"), under a redis-py call.
    return (isinstance(exc, RuntimeError) and "closed=True" in str(exc)
            and any(name.startswith(REDIS_CLIENT_DIR) for name in frames))


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    if raised_in_redis_client(exc):
        return await _redis_down(request, exc)
    log.exception("unhandled_error")
    return JSONResponse(envelope("internal_error", "Internal error."), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(redis.RedisError, _redis_down)
    # The cluster client's own outage errors (no master for a slot mid-failover, no node reachable).
    app.add_exception_handler(redis.exceptions.RedisClusterException, _redis_down)
    app.add_exception_handler(Exception, _crash)
