"""The ingress side of the mailbox protocol (async, used by ``api/``): accept, cancel and read turns.

Owned by the worker package because it is one protocol with ``mailbox.py``: the same keys and scripts.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis.asyncio

from ..events.models import event_json
from ..events.replies import relay_async
from ..messages import Turn, TurnInput, TurnStatus, conversation_of, new_turn_id, turn_id_parts, turn_nonce
from ..settings import Settings
from ..webhooks.policy import check_webhook_events, check_webhook_url
from ..webhooks.store import WebhookStore
from . import scripts
from .keys import DEFAULT_TENANT, Keys, turn_index_ttl_s

DELETED_EVENTS_GRACE_S = 10
"""A deleted conversation's event stream keeps the cancellations of its delete this long (and nothing else),
so that listeners following it at that moment read them; the API answers 404 for it at once."""


class EnqueueStatus(str, Enum):  # noqa: UP042 - StrEnum would change str() and format() output
    ok = "ok"
    duplicate = "duplicate"
    full = "full"
    missing = "missing"
    overloaded = "overloaded"
    reused = "reused"
    """The idempotency key names an earlier turn that asked for something else."""


@dataclass(frozen=True)
class EnqueueResult:
    status: EnqueueStatus
    turn_id: str
    position: int
    need_wakeup: bool
    created_at: float


@dataclass(frozen=True)
class QueueState:
    pending: int
    running_turn: str | None


def request_fingerprint(turn: Turn) -> str:
    """What a turn asks for, hashed: the same idempotency key with another request is a client bug that would
    silently drop the new message, so the ingress compares this instead of trusting the key alone."""
    asked = {"input": turn.input, "model": turn.model, "instructions": turn.instructions,
             "metadata": turn.metadata}
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


class Ingress:
    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)

    async def register_conversation(self, conv: str, *, created_at: int, metadata: dict[str, str],
                                    key: str | None, webhook_url: str | None = None,
                                    webhook_events: list[str] | None = None,
                                    tenant: str = DEFAULT_TENANT) -> None:
        fields = {"id": conv, "created_at": created_at, "metadata": json.dumps(metadata), "key": key or "",
                  "tenant": tenant, **_webhook_fields(webhook_url, webhook_events)}
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

    async def update_conversation(self, conv: str, *, metadata: dict[str, str] | None = None
                                  ) -> dict[str, Any] | None:
        """Change the given fields of the conversation's record (``None``: leave it); the record after, or
        ``None`` when there is no such conversation. New updatable fields are one keyword each."""
        pairs = scripts.flatten({"metadata": None if metadata is None else json.dumps(metadata)})
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

    async def delete_conversation(self, conv: str, key: str | None, tenant: str = DEFAULT_TENANT) -> int:
        """Delete the conversation and everything kept of it (delete.lua), after cancelling its waiting and
        running turns (``turn.cancelled``); returns how many queued turns were cancelled."""
        k = self.keys
        head, tail = turn_id_parts(conv)
        result = await scripts.DELETE.run_async(
            self.client, [k.conversation(conv), k.inbox(conv), k.seq(conv), k.events(conv), k.outbox(conv),
                          k.deleted(conv), k.inflight(conv), k.lease(conv), k.state(conv), k.fence(conv),
                          k.turn_index(conv), k.idempotency_index(conv)],
            [k.turn_prefix(conv), f"{time.time():.6f}", conv, self.settings.stream_maxlen,
             self.settings.retention_s, head, tail, k.idempotency_prefix(conv), DELETED_EVENTS_GRACE_S])
        if result[0] < 0:
            return 0
        cancelled, turns = int(result[0]), list(result[1])
        if key:
            await self.client.delete(k.conversation_key(tenant, key))
        if cancelled > 0:
            await self.client.decrby(k.queued_total, cancelled)
        if turns:
            # Only ids, but of turns that no longer exist: `parley dead-letter` would list them forever.
            await self.client.zrem(k.dead_letters, *(f"{conv}/{turn}" for turn in turns))
        await relay_async(self.client, k, conv, maxlen=self.settings.replies_maxlen)
        # After the relay: until then the reaper finds the outbox through this index (if we die here).
        await self.client.zrem(k.active, conv)
        return cancelled

    async def enqueue(self, *, conversation_id: str, input: TurnInput, model: str | None,
                      instructions: str | None, metadata: dict[str, str],
                      idempotency_key: str | None, tenant: str = DEFAULT_TENANT,
                      deadline_s: float | None = None) -> EnqueueResult:
        """Accept a turn for ``conversation_id`` if it exists and belongs to ``tenant`` (else ``missing``,
        and nothing is written: another tenant's conversation must not even see its index touched)."""
        k, conv, now = self.keys, conversation_id, time.time()
        turn = Turn(id=new_turn_id(conv), conversation_id=conv, status=TurnStatus.queued, input=input,
                    model=model, instructions=instructions, metadata=metadata,
                    idempotency_key=idempotency_key, created_at=now,
                    deadline_s=None if deadline_s is None else min(deadline_s, self.settings.turn_deadline_s))
        async with self.client.pipeline(transaction=False) as pipe:  # one round trip, as before tenants
            pipe.get(k.queued_total)
            pipe.exists(k.conversation(conv))
            pipe.hget(k.conversation(conv), "tenant")
            queued_total, exists, owner = await pipe.execute()
        if not exists or (owner or DEFAULT_TENANT) != tenant:
            return EnqueueResult(status=EnqueueStatus.missing, turn_id="", position=0, need_wakeup=False,
                                 created_at=now)
        if queued_total is not None and int(queued_total) >= self.settings.global_queue_cap:
            return EnqueueResult(status=EnqueueStatus.overloaded, turn_id="", position=int(queued_total),
                                 need_wakeup=False, created_at=now)
        # The index write comes first and is idempotent: if we crash before the script, nothing was accepted;
        # after it, the reaper finds the conversation through ``active`` even if the wake-up is never sent.
        await self.client.zadd(k.active, {conv: int(now * 1000)})
        event = event_json("turn.queued", conversation_id=conv, turn_id=turn.id, event_id=f"{turn.id}.queued",
                           metadata=metadata or None)
        status, turn_id, position, need = await scripts.ENQUEUE.run_async(
            self.client,
            [k.conversation(conv), k.inbox(conv), k.lease(conv), k.state(conv), k.inflight(conv),
             k.turn(conv, turn.id), k.idempotency(conv, idempotency_key or ""), k.seq(conv), k.events(conv),
             k.turn_index(conv), k.idempotency_index(conv)],
            [turn.id, int(idempotency_key is not None), self.settings.mailbox_cap,
             self.settings.idempotency_ttl_s, int(now * 1000), self.settings.retention_s,
             self.settings.stream_maxlen, event, request_fingerprint(turn), tenant, turn_nonce(turn.id),
             idempotency_key or "", turn_index_ttl_s(self.settings.retention_s),
             *scripts.flatten(dict(turn.to_hash()))])
        if status == EnqueueStatus.ok:
            await self.client.incr(k.queued_total)
        elif status == EnqueueStatus.missing:
            # Deleted since the check above: take back the index entry, or it would sit in the reaper's
            # index for its idle time.
            await self.client.zrem(k.active, conv)
        return EnqueueResult(status=EnqueueStatus(status), turn_id=turn_id, position=int(position),
                             need_wakeup=bool(need), created_at=now)

    async def get_turn(self, turn_id: str, tenant: str | None = None) -> Turn | None:
        """The turn's record; with ``tenant``, only if its conversation exists and belongs to that tenant
        (a turn of another tenant, or of a deleted conversation, is not there for the caller)."""
        conv = conversation_of(turn_id)
        if conv is None:
            return None
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.turn(conv, turn_id))
            pipe.exists(self.keys.conversation(conv))
            pipe.hget(self.keys.conversation(conv), "tenant")
            fields, exists, owner = await pipe.execute()
        if tenant is not None and (not exists or (owner or DEFAULT_TENANT) != tenant):
            return None
        return Turn.parse(fields, conv, turn_id)[0] if fields else None

    async def cancel(self, turn: Turn) -> bool:
        k, conv = self.keys, turn.conversation_id
        event = event_json("turn.cancelled", conversation_id=conv, turn_id=turn.id,
                           event_id=f"{turn.id}.cancelled", metadata=turn.metadata or None,
                           reason="cancelled")
        result = await scripts.CANCEL.run_async(
            self.client, [k.turn(conv, turn.id), k.inbox(conv), k.seq(conv), k.events(conv), k.outbox(conv)],
            [turn.id, f"{time.time():.6f}", event, self.settings.stream_maxlen, self.settings.retention_s])
        if result == 1:
            await self.client.decr(k.queued_total)
            await relay_async(self.client, k, conv, maxlen=self.settings.replies_maxlen)
        return bool(result == 1)

    async def backlog(self) -> dict[str, float]:
        """The reaper's last count of the backlog, with the live dead-letter count."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.stats)
            pipe.zcard(self.keys.dead_letters)
            stats, dead = await pipe.execute()
        return {**{k: float(v) for k, v in stats.items()}, "dead_letters": float(dead)}

    async def open_circuits(self) -> dict[str, bool]:
        """Each model's shared upstream circuit (worker/run/circuit.py): whether it is open now."""
        models = sorted(await self.client.smembers(self.keys.upstream_models))
        async with self.client.pipeline(transaction=False) as pipe:
            # The command, not pipe.time(): redis-py's cluster pipeline refuses that method by name.
            pipe.execute_command("TIME")
            for model in models:
                pipe.hget(self.keys.upstream_health(model), "open_until")
            (seconds, micros), *until = await pipe.execute()
        now_ms = seconds * 1000 + micros // 1000
        return {model: float(u or 0) > now_ms for model, u in zip(models, until, strict=True)}

    async def queue_state(self, conv: str) -> QueueState:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys.inbox(conv))
            pipe.get(self.keys.inflight(conv))
            pending, running = await pipe.execute()
        return QueueState(pending=int(pending), running_turn=running or None)


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


def _webhook_fields(url: str | None, events: list[str] | None) -> dict[str, str]:
    """The conversation hash's webhook fields; none without a URL (the events only matter with one)."""
    if url is None:
        return {}
    fields = {"webhook_url": check_webhook_url(url)}
    if events is not None:
        fields["webhook_events"] = json.dumps(check_webhook_events(events))
    return fields
