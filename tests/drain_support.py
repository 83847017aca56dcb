"""Build a Drainer for in-process tests, with the same parts a worker process builds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio

from parley.worker.run.circuit import Circuit
from parley.worker.run.drain import Drainer
from parley.worker.run.policy import RetryPolicy
from parley.worker.run.upstream import Upstream
from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress
from parley.worker.store.lease import LeaseKeeper
from parley.worker.store.mailbox import Mailbox
from parley.worker.tools.registry import ToolRegistry

T = TypeVar("T")


def run_async(settings: Settings, action: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
    """``action(client)`` on a fresh async client in an event loop of its own (the API's side, from a sync
    test: each step gets its own loop, so the client cannot outlive it)."""
    async def go() -> T:
        client = redis.asyncio.Redis.from_url(settings.redis_url_required, decode_responses=True)
        try:
            return await action(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def run_ingress(settings: Settings, action: Callable[[Ingress], Awaitable[Any]]) -> Any:
    """``action(ingress)`` with the API's Ingress on a fresh async client (see :func:`run_async`)."""
    return run_async(settings, lambda client: action(Ingress(client, settings)))


def make_drainer(settings: Settings, client: redis.Redis, upstream: Upstream,
                 wake: Callable[[str], None] | None = None, registry: ToolRegistry | None = None) -> Drainer:
    """The Drainer a worker process would build from ``settings`` (streaming or not, and so on)."""
    mailbox = Mailbox(client, settings)
    keeper = LeaseKeeper(client, mailbox.keys, ttl_ms=settings.lease_ttl_ms,
                         interval_ms=settings.heartbeat_interval_ms)
    policy = RetryPolicy(deadline_s=settings.turn_deadline_s, max_crashes=settings.max_crashes,
                         backoff_base_s=settings.backoff_base_s, backoff_max_s=settings.backoff_max_s)
    circuit = Circuit(client, mailbox.keys, settings) if settings.circuit_breaker else None
    return Drainer(mailbox, upstream, keeper, policy, fairness_budget=settings.fairness_budget,
                   wake=wake or (lambda conversation_id: None), stream=settings.stream_upstream,
                   delta_interval_s=settings.delta_interval_ms / 1000, circuit=circuit, registry=registry)
