"""Request dependencies: the services built at startup (authentication is in ``auth/``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import openai
from celery import Celery
from fastapi import Depends, Request

from parley.worker.celery_app import DRAIN_TASK, QUEUE
from parley.worker.log import get_logger
from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress

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
