"""The ingress: a thin FastAPI app that validates, runs one Redis script and sends a wake-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from parley import __version__
from parley.worker.celery_app import create_celery
from parley.worker.log import configure_logging, get_logger
from parley.worker.settings import Settings, get_settings
from parley.worker.store.connections import async_client
from parley.worker.store.ingress import Ingress

from . import bridges, errors, openapi
from .auth.keys import KeyRing
from .auth.middleware import Authenticate
from .deps import Services, openai_client
from .fanout import Hub
from .listeners import Listeners
from .middleware import BodyLimit, RequestContext
from .routes import conversations, events, health, turns
from .wakeups import PUBLISH_TIMEOUT_S, WakeupSender

log = get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    ring = KeyRing([key.get_secret_value() for key in settings.api_keys], settings.api_keys_file,
                   strict=settings.environment == "production")
    if settings.environment == "production" and not ring.enabled:
        raise RuntimeError("PARLEY_API_KEYS or PARLEY_API_KEYS_FILE is required in production: the API would "
                           "be open to anyone")
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = async_client(settings)
        ingress = Ingress(redis, settings)
        hub = Hub(settings.redis_url_required, redis, ingress.keys)
        celery = create_celery(settings, publish_timeout_s=PUBLISH_TIMEOUT_S)
        services = Services(settings=settings, ingress=ingress, openai=openai_client(settings),
                            wakeups=WakeupSender(celery),
                            listeners=Listeners(hub, limit=settings.max_listeners))
        app.state.services = services
        services.wakeups.start()
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            # Off the loop: the queued wake-ups get a few seconds to go out, which must not stall the
            # requests still finishing during a graceful shutdown.
            await asyncio.to_thread(services.wakeups.stop)
            await services.openai.close()
            await redis.aclose()
            celery.close()

    # FastAPIOffline serves Swagger UI and ReDoc from files in its wheel: /docs works without a CDN.
    app = FastAPIOffline(title="parley", version=__version__, lifespan=lifespan,
                         description="Ordered chat-bot turns on the OpenAI Responses and Conversations APIs.")
    errors.install(app)
    openapi.install(app, max_input_chars=settings.max_input_chars)

    # The last added is outermost: the body cap, then the request context (its log line is the audit line),
    # then authentication, which binds the key's name to that context before any route reads the body.
    app.add_middleware(Authenticate, ring=ring, settings=settings)
    app.add_middleware(RequestContext)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.include_router(health.router)
    app.include_router(conversations.router)
    app.include_router(turns.router)
    app.include_router(events.router)
    bridges.mount(app, settings)
    app.state.key_ring = ring
    return app
