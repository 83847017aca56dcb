"""Request dependencies: the services built at startup (authentication is in ``auth/``), and the same
services for the processes that accept turns outside the API (the Discord gateway bot, Slack's Socket
Mode)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import openai
from fastapi import Depends, Request

from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress

from .listeners import Listeners
from .wakeups import PUBLISH_TIMEOUT_S, WakeupSender


@dataclass
class Services:
    settings: Settings
    ingress: Ingress
    openai: openai.AsyncOpenAI
    wakeups: WakeupSender
    listeners: Listeners

    def wake(self, conversation_id: str) -> None:
        # Only a hint, handed to the sender thread: the request never waits on the broker, and a wake-up that
        # is not sent is re-sent by the reaper once hint_retry_s has passed (the turn is in its mailbox).
        self.wakeups.submit(conversation_id)


def openai_client(settings: Settings) -> openai.AsyncOpenAI:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "local-emulator"
    return openai.AsyncOpenAI(api_key=key, base_url=settings.openai_base_url,
                              timeout=settings.openai_timeout_s, max_retries=2)


@asynccontextmanager
async def standalone_services(settings: Settings) -> AsyncIterator[Services]:
    """The API's services, as its lifespan builds them, for accepting turns outside the API: the same
    conversation get-or-create, enqueue and wake-ups. The event hub is never started: these processes
    follow no events (the relays do)."""
    from parley.worker.celery_app import create_celery
    from parley.worker.store.connections import async_client

    from .fanout import Hub

    redis = async_client(settings)
    ingress = Ingress(redis, settings)
    celery = create_celery(settings, publish_timeout_s=PUBLISH_TIMEOUT_S)
    hub = Hub(settings.redis_url_required, redis, ingress.keys)
    built = Services(settings=settings, ingress=ingress, openai=openai_client(settings),
                     wakeups=WakeupSender(celery), listeners=Listeners(hub, limit=1))
    built.wakeups.start()
    try:
        yield built
    finally:
        await asyncio.to_thread(built.wakeups.stop)
        await built.openai.close()
        await redis.aclose()
        celery.close()


async def get_services(request: Request) -> Services:
    # async for the same reason as the scope checks (api/auth/__init__.py): no thread pool hop per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
