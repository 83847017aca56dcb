"""The ingress side of the mailbox protocol (async, used by ``api/``): accept, cancel and read turns.

Owned by the worker package because it is one protocol with ``mailbox.py``: the same keys and scripts.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis.asyncio

from ..events.models import event_json
from ..events.replies import relay_async
from ..messages import Turn, TurnInput, TurnStatus, conversation_of, new_turn_id, turn_id_parts, turn_nonce
from ..request import resolve
from ..settings import Settings
from ..texting import policy as texting_policy
from ..texting.decide import debounce_deadline
from . import scripts
from .connections import is_cluster
from .conversations import ConversationRecords, stored_defaults
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
    busy = "busy"
    """Refused by the policy ``reject``: another turn of the conversation is queued or running."""
    invalid = "invalid"
    """The turn's double-texting fields do not fit its conversation's (``detail`` says how)."""


@dataclass(frozen=True)
class EnqueueResult:
    status: EnqueueStatus
    turn_id: str
    position: int
    need_wakeup: bool
    created_at: float
    detail: str = ""
    superseded: int = 0
    """How many waiting turns this one superseded (policy latest)."""


@dataclass(frozen=True)
class QueueState:
    pending: int
    running_turn: str | None


def request_fingerprint(asked: Mapping[str, Any]) -> str:
    """What a turn asks for, hashed: the same idempotency key with another request is a client bug that would
    silently drop the new message, so the ingress compares this instead of trusting the key alone. Only the
    turn's own fields count, not the defaults it was resolved with: a retry after the conversation's defaults
    changed is still the same request. A field left out is not hashed, so a plain turn hashes as it always
    did (keys stored before the request options still match their retries)."""
    own = {name: value for name, value in asked.items() if name in FINGERPRINT_BASE or value is not None}
    canonical = json.dumps(own, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


FINGERPRINT_BASE = frozenset({"input", "model", "instructions", "metadata"})
"""The fields every fingerprint holds (``null`` when not given), as before the request options."""


def stored_policy(policy: texting_policy.TextingPolicy) -> dict[str, Any]:
    """The turn's record fields for its policy; none for today's default (most turns: Redis memory)."""
    fields: dict[str, Any] = {}
    if policy.mode != "enqueue":
        fields["double_texting"] = policy.mode
    if policy.waits:
        fields["debounce_ms"] = policy.debounce_ms
        fields["debounce_max_ms"] = policy.debounce_max_ms
    return fields


class Ingress(ConversationRecords):
    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)

    @property
    def server_defaults(self) -> dict[str, Any]:
        """The server's layer of every turn's request: PARLEY_DEFAULT_REQUEST, PARLEY_MODEL and
        PARLEY_INSTRUCTIONS."""
        return {**self.settings.default_request, "model": self.settings.model,
                "instructions": self.settings.instructions}

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
                      deadline_s: float | None = None, request: Mapping[str, Any] | None = None,
                      server_tools: list[str] | None = None,
                      texting: Mapping[str, Any] | None = None) -> EnqueueResult:
        """Accept a turn for ``conversation_id`` if it exists and belongs to ``tenant`` (else ``missing``,
        and nothing is written: another tenant's conversation must not even see its index touched).
        ``request`` holds the turn's own Responses options; the turn is stored with its whole request
        resolved against the conversation's and the server's defaults (``worker.request.resolve``)."""
        k, conv, now = self.keys, conversation_id, time.time()
        own = {**(request or {}), "model": model, "instructions": instructions}
        async with self.client.pipeline(transaction=False) as pipe:  # one round trip, as before tenants
            pipe.get(k.queued_total)
            pipe.exists(k.conversation(conv))
            pipe.hmget(k.conversation(conv), ["tenant", "defaults"])
            pipe.hget(k.state(conv), "wait_since")
            queued_total, exists, (owner, defaults), wait_since = await pipe.execute()
        if not exists or (owner or DEFAULT_TENANT) != tenant:
            return EnqueueResult(status=EnqueueStatus.missing, turn_id="", position=0, need_wakeup=False,
                                 created_at=now)
        if queued_total is not None and int(queued_total) >= self.settings.global_queue_cap:
            return EnqueueResult(status=EnqueueStatus.overloaded, turn_id="", position=int(queued_total),
                                 need_wakeup=False, created_at=now)
        conversation_defaults = stored_defaults(defaults)
        try:
            policy = texting_policy.resolve(texting or {}, conversation_defaults,
                                            self.settings.texting_policy)
        except ValueError as exc:  # e.g. its debounce_ms above its conversation's debounce_max_ms
            return EnqueueResult(status=EnqueueStatus.invalid, turn_id="", position=0, need_wakeup=False,
                                 created_at=now, detail=str(exc))
        due = debounce_deadline(policy, first_ms=int(wait_since) if wait_since else int(now * 1000),
                                last_ms=int(now * 1000))
        resolved = resolve(own, {name: value for name, value in conversation_defaults.items()
                                 if name not in texting_policy.FIELDS}, self.server_defaults)
        turn = Turn(id=new_turn_id(conv), conversation_id=conv, status=TurnStatus.queued, input=input,
                    model=resolved.pop("model", None), instructions=resolved.pop("instructions", None),
                    request=resolved or None, server_tools=server_tools, metadata=metadata,
                    idempotency_key=idempotency_key, created_at=now, **stored_policy(policy),
                    deadline_s=None if deadline_s is None else min(deadline_s, self.settings.turn_deadline_s))
        fingerprint = request_fingerprint({**own, "input": input, "metadata": metadata,
                                           "server_tools": server_tools, **(texting or {})})
        event = event_json("turn.queued", conversation_id=conv, turn_id=turn.id, event_id=f"{turn.id}.queued",
                           metadata=metadata or None)
        result, counted = await self._accept(conv, now, (
            [k.conversation(conv), k.inbox(conv), k.lease(conv), k.state(conv), k.inflight(conv),
             k.turn(conv, turn.id), k.idempotency(conv, idempotency_key or ""), k.seq(conv), k.events(conv),
             k.turn_index(conv), k.idempotency_index(conv), k.outbox(conv)],
            [turn.id, int(idempotency_key is not None), self.settings.mailbox_cap,
             self.settings.idempotency_ttl_s, int(now * 1000), self.settings.retention_s,
             self.settings.stream_maxlen, event, fingerprint, tenant, turn_nonce(turn.id),
             idempotency_key or "", turn_index_ttl_s(self.settings.retention_s), policy.mode,
             "" if due is None else due, k.turn_prefix(conv), f"{now:.6f}", conv,
             *scripts.flatten(dict(turn.to_hash()))]))
        status, turn_id, position, need, *rest = result
        superseded = int(rest[0]) if rest else 0  # only an accepted turn (``ok``) supersedes others
        # The turns now waiting less what the count already holds: the one accepted, not the ones it
        # superseded, nor the one counted in advance.
        if change := int(status == EnqueueStatus.ok) - superseded - int(counted):
            await self.client.incrby(k.queued_total, change)
        if superseded:
            await relay_async(self.client, k, conv, maxlen=self.settings.replies_maxlen)
        if status == EnqueueStatus.missing:
            # Deleted since the check above: take back the index entry, or it would sit in the reaper's
            # index for its idle time.
            await self.client.zrem(k.active, conv)
        return EnqueueResult(status=EnqueueStatus(status), turn_id=turn_id, position=int(position),
                             need_wakeup=bool(need), created_at=now, superseded=superseded)

    async def _accept(self, conv: str, now: float,
                      call: tuple[list[str], list[Any]]) -> tuple[list[Any], bool]:
        """The reaper's index entry, then the enqueue script; on one Redis the queued-turns count goes with
        them, raised in advance (``True`` is returned then), so an accepted turn costs the request one round
        trip here, not three: on a busy host every round trip waits for a CPU twice (Redis's, then the API's).

        The index write comes first and is idempotent: if we crash before the script, nothing was accepted;
        after it, the reaper finds the conversation through ``active`` even if the wake-up is never sent. A
        cluster keeps the three apart: its pipeline sends to each node on its own, so the index on another
        node could be missing behind an accepted turn."""
        k, (keys, args) = self.keys, call
        if is_cluster(self.client):
            await self.client.zadd(k.active, {conv: int(now * 1000)})
            return await scripts.ENQUEUE.run_async(self.client, keys, args), False
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(k.active, {conv: int(now * 1000)})
            scripts.ENQUEUE.queue(pipe, self.client, keys, args)
            pipe.incr(k.queued_total)
            _, result, counted = await pipe.execute(raise_on_error=False)
        if isinstance(result, redis.exceptions.NoScriptError):  # a restarted or flushed Redis
            result = await scripts.ENQUEUE.run_async(self.client, keys, args)
        elif isinstance(result, Exception):
            if not isinstance(counted, Exception):
                await self.client.decr(k.queued_total)
            raise result
        # An INCR that failed after the script (out of memory, say) leaves the count to the caller.
        return result, not isinstance(counted, Exception)

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

