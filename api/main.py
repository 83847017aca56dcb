"""The ingress: a thin FastAPI app that validates, runs one Redis script and sends a wake-up."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import openai
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from parley import __version__
from parley.worker.celery_app import create_celery
from parley.worker.connections import async_client
from parley.worker.ingress import Ingress
from parley.worker.log import configure_logging, get_logger
from parley.worker.settings import Settings, get_settings

from . import errors, openapi
from .deps import Services
from .routes import conversations, events, health, turns

log = get_logger(__name__)

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _openai(settings: Settings) -> openai.AsyncOpenAI:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "local-emulator"
    return openai.AsyncOpenAI(api_key=key, base_url=settings.openai_base_url,
                              timeout=settings.openai_timeout_s, max_retries=2)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if settings.environment == "production" and not settings.api_keys:
        raise RuntimeError("PARLEY_API_KEYS is required in production: the API would be open to anyone")
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = async_client(settings)
        services = Services(settings=settings, ingress=Ingress(redis, settings), openai=_openai(settings),
                            celery=create_celery(settings))
        app.state.services = services
        try:
            yield
        finally:
            await services.openai.close()
            await redis.aclose()

    # FastAPIOffline serves Swagger UI and ReDoc from files in its wheel: /docs works without a CDN.
    app = FastAPIOffline(title="parley", version=__version__, lifespan=lifespan,
                         description="Ordered chat-bot turns on the OpenAI Responses and Conversations APIs.")
    errors.install(app)
    openapi.install(app)

    @app.middleware("http")
    async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("x-request-id") or f"req_{secrets.token_hex(8)}"
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse(errors.envelope("body_too_large", f"The body is over {settings.max_body_bytes} "
                                                                  "bytes."), status_code=413)
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["x-request-id"] = request_id
        if request.url.path not in QUIET_PATHS:
            # One canonical line per request; the bound request_id joins it to anything logged on the way.
            log.info("request", method=request.method, path=request.url.path, status=response.status_code,
                     duration_ms=round((time.perf_counter() - started) * 1000, 2))
        return response

    app.include_router(health.router)
    app.include_router(conversations.router)
    app.include_router(turns.router)
    app.include_router(events.router)
    return app
