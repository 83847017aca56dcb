"""The conversation a bridge's chat (a Slack thread, a Discord channel) maps to, made on first use."""

from __future__ import annotations

from fastapi import Response

from ..auth.scopes import CONVERSATIONS_WRITE, Principal
from ..deps import Services
from ..routes.conversations import create_conversation
from ..schemas import CreateConversation


async def get_or_create(services: Services, *, tenant: str, key: str, metadata: dict[str, str]) -> str:
    """The id of the tenant's conversation for ``key``, created (upstream too) if there is none yet.

    Calls the route itself, as the bridge's own principal, rather than a copy of it: the upstream id check,
    the race between two creates for one key and the record's fields stay in one place. Its ``ApiError``
    (an upstream failure) reaches the caller."""
    principal = Principal(key=f"bridge:{tenant}", tenant=tenant, scopes=frozenset({CONVERSATIONS_WRITE}))
    record = await create_conversation(CreateConversation(key=key, metadata=metadata or None), services,
                                       Response(), principal)
    return str(record["id"])
