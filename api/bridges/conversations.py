"""The conversation a bridge's chat (a Slack thread, a Discord channel) maps to, made on first use."""

from __future__ import annotations

from ..deps import Services
from ..routes.conversations import get_or_create as get_or_create_record


async def get_or_create(services: Services, *, tenant: str, key: str, metadata: dict[str, str]) -> str:
    """The id of the tenant's conversation for ``key``, created (upstream too) if there is none yet: the
    route's own get-or-create (the upstream id check, the race between two creates for one key). Its
    ``ApiError`` (an upstream failure) reaches the caller."""
    record, _ = await get_or_create_record(services, tenant=tenant, key=key, metadata=metadata)
    return str(record["id"])
