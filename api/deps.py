"""Request dependencies: the services built at startup (authentication is in ``auth/``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import openai
from fastapi import Depends, Request

from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress

from .listeners import Listeners
from .wakeups import WakeupSender


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


async def get_services(request: Request) -> Services:
    # async for the same reason as the scope checks (api/auth/__init__.py): no thread pool hop per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
