"""Request dependencies: the services built at startup, and bearer-key authentication."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

import openai
from celery import Celery
from fastapi import Depends, Request

from parley.worker.celery_app import DRAIN_TASK, QUEUE
from parley.worker.log import get_logger
from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress

from .errors import ApiError
from .listeners import Listeners

log = get_logger(__name__)


@dataclass
class Services:
    settings: Settings
    ingress: Ingress
    openai: openai.AsyncOpenAI
    celery: Celery
    listeners: Listeners

    def wake(self, conversation_id: str) -> None:
        # Only a hint: if the broker is unreachable the turn is still in its mailbox, and the reaper
        # re-sends the wake-up once hint_retry_s has passed.
        try:
            self.celery.send_task(DRAIN_TASK, args=[conversation_id], queue=QUEUE)
        except Exception as exc:  # noqa: BLE001 - any broker failure is survivable here
            log.warning("wakeup_not_sent", conversation_id=conversation_id, error=str(exc))


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_api_key(request: Request, services: ServicesDep) -> None:
    keys = services.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "Missing bearer API key.", headers={"WWW-Authenticate": "Bearer"})
    supplied = token.strip().encode()
    # Compare against every key so the time taken does not reveal which one (or whether any) matched early.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied, key.get_secret_value().encode())
    if not matched:
        raise ApiError(401, "unauthorized", "Invalid API key.", headers={"WWW-Authenticate": "Bearer"})


Authenticated = Depends(require_api_key)
