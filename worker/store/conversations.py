"""A conversation's record (the API side): create, read, update its metadata, webhook and request defaults,
and its get-or-create key. ``Ingress`` has these methods; they are here to keep each module small."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio

from ..settings import Settings
from ..webhooks.policy import check_webhook_events, check_webhook_url
from ..webhooks.store import WebhookStore
from . import scripts
from .keys import DEFAULT_TENANT, Keys


class ConversationRecords:
    client: redis.asyncio.Redis
    settings: Settings
    keys: Keys

    async def register_conversation(self, conv: str, *, created_at: int, metadata: dict[str, str],
                                    key: str | None, webhook_url: str | None = None,
                                    webhook_events: list[str] | None = None,
                                    tenant: str = DEFAULT_TENANT,
                                    defaults: dict[str, Any] | None = None) -> None:
        fields = {"id": conv, "created_at": created_at, "metadata": json.dumps(metadata), "key": key or "",
                  "tenant": tenant, **_webhook_fields(webhook_url, webhook_events),
                  **_defaults_field(defaults)}
        await self.client.hset(self.keys.conversation(conv), mapping=fields)
        if webhook_url is not None:
            await self._webhooks_from_now()

    async def conversation(self, conv: str) -> dict[str, Any] | None:
        fields = await self.client.hgetall(self.keys.conversation(conv))
        if not fields:
            return None
        # Tolerant of a damaged record (a hand edit, a bug): every stored conversation can still be read,
        # and deleted, instead of answering 500 for as long as it exists.
        events = _json(fields.get("webhook_events"), list)
        created_at = fields.get("created_at", "")
        return {"id": conv, "created_at": int(created_at) if created_at.isdigit() else 0,
                "metadata": _metadata(fields.get("metadata")), "key": fields.get("key") or None,
                "webhook_url": fields.get("webhook_url") or None,
                "webhook_events": events,
                "defaults": stored_defaults(fields.get("defaults")),
                "tenant": fields.get("tenant") or DEFAULT_TENANT}

    async def owner(self, conv: str) -> str | None:
        """The tenant a conversation belongs to; ``None`` when there is no such conversation."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.conversation(conv))
            pipe.hget(self.keys.conversation(conv), "tenant")
            exists, tenant = await pipe.execute()
        return (tenant or DEFAULT_TENANT) if exists else None

    async def set_webhook_url(self, conv: str, url: str | None, events: list[str] | None = None) -> bool:
        """Point the conversation's webhook at ``url`` (``None``: back to the server default, if any), with
        the event types it gets (``None``: the terminal ones). ``False`` when there is no such conversation;
        ``ValueError`` for a URL or event type the dispatcher could not deliver."""
        name = self.keys.conversation(conv)
        if not await self.client.exists(name):
            return False
        fields = _webhook_fields(url, events)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(name, "webhook_url", "webhook_events")
            if fields:
                pipe.hset(name, mapping=fields)
            await pipe.execute()
        if url is not None:
            await self._webhooks_from_now()
        return True

    async def _webhooks_from_now(self) -> None:
        """Make sure the dispatchers' consumer group exists (it starts at the newest reply), so the replies
        of a conversation given a webhook wait for delivery even before any dispatcher has ever run."""
        await WebhookStore(self.client, self.keys).ensure_group()

    async def update_conversation(self, conv: str, *, metadata: dict[str, str] | None = None,
                                  defaults: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Change the given fields of the conversation's record (``None``: leave it; ``defaults={}`` removes
        them); the record after, or ``None`` when there is no such conversation. New updatable fields are one
        keyword each."""
        # '' deletes a field (update_conversation.lua): a conversation without defaults keeps no empty object.
        stored = None if defaults is None else _defaults_field(defaults).get("defaults", "")
        pairs = scripts.flatten({"metadata": None if metadata is None else json.dumps(metadata),
                                 "defaults": stored})
        name = self.keys.conversation(conv)
        if pairs and not await scripts.UPDATE_CONVERSATION.run_async(self.client, [name], pairs):
            return None
        return await self.conversation(conv)

    async def claim_key(self, tenant: str, key: str, conv: str) -> str:
        """Bind a tenant's get-or-create key to ``conv`` unless it is already bound; returns the bound
        conversation."""
        name = self.keys.conversation_key(tenant, key)
        if await self.client.set(name, conv, nx=True):
            return conv
        return str(await self.client.get(name))

    async def conversation_for_key(self, tenant: str, key: str) -> str | None:
        value = await self.client.get(self.keys.conversation_key(tenant, key))
        return str(value) if value else None


def stored_defaults(raw: str | None) -> dict[str, Any]:
    """A conversation's request defaults as stored (``{}`` for none, or for a damaged field)."""
    return _json(raw, dict) or {}


def _json(raw: str | None, kind: type) -> Any:
    """``raw`` parsed if it is JSON of ``kind``, else ``None``."""
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, kind) else None


def _metadata(raw: str | None) -> dict[str, str]:
    value = _json(raw, dict) or {}
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _defaults_field(defaults: dict[str, Any] | None) -> dict[str, str]:
    """The conversation hash's ``defaults`` field; none for no defaults (most conversations)."""
    return {"defaults": json.dumps(defaults, separators=(",", ":"))} if defaults else {}


def _webhook_fields(url: str | None, events: list[str] | None) -> dict[str, str]:
    """The conversation hash's webhook fields; none without a URL (the events only matter with one)."""
    if url is None:
        return {}
    fields = {"webhook_url": check_webhook_url(url)}
    if events is not None:
        fields["webhook_events"] = json.dumps(check_webhook_events(events))
    return fields
