"""What one worker process builds once: Redis client, OpenAI client, lease keeper, drainer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from celery import Celery

from ..celery_app import DRAIN_TASK, QUEUE
from ..settings import Settings, get_settings
from ..store.connections import sync_client
from ..store.deferred import DeferredWrites
from ..store.lease import LeaseKeeper
from ..store.mailbox import Mailbox
from ..tools.registry import registry
from .circuit import Circuit
from .drain import Drainer
from .policy import RetryPolicy
from .shutdown import ShutdownSignal
from .upstream import Upstream, make_clients


class Wakeups:
    """Sends the ``drain`` hint. Only a hint: if it is lost, the reaper sends another."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def __call__(self, conversation_id: str) -> None:
        self.celery.send_task(DRAIN_TASK, args=[conversation_id], queue=QUEUE)

    def later(self, conversation_id: str, delay_s: float) -> None:
        """When a debounce ends. The worker that gets it holds it until then (an ETA task); lost, the reaper
        re-wakes the conversation (PARLEY_HINT_RETRY_S) and the claim sends another."""
        self.celery.send_task(DRAIN_TASK, args=[conversation_id], queue=QUEUE, countdown=delay_s)


@dataclass
class Runtime:
    settings: Settings
    mailbox: Mailbox
    drainer: Drainer
    keeper: LeaseKeeper
    wake: Wakeups
    shutdown: ShutdownSignal


def build_runtime(settings: Settings, celery: Celery) -> Runtime:
    client = sync_client(settings)
    mailbox = Mailbox(client, settings)
    keeper = LeaseKeeper(client, mailbox.keys, ttl_ms=settings.lease_ttl_ms,
                         interval_ms=settings.heartbeat_interval_ms)
    upstream = Upstream(make_clients(settings, concurrency=settings.worker_concurrency), settings)
    policy = RetryPolicy(deadline_s=settings.turn_deadline_s, max_crashes=settings.max_crashes,
                         backoff_base_s=settings.backoff_base_s, backoff_max_s=settings.backoff_max_s)
    circuit = Circuit(client, mailbox.keys, settings) if settings.circuit_breaker else None
    registry.load(settings.tools)  # their @tool functions register themselves
    wake = Wakeups(celery)
    shutdown = ShutdownSignal()
    deferred = DeferredWrites(client, mailbox.keys, maxlen=settings.replies_maxlen)
    drainer = Drainer(mailbox, upstream, keeper, policy, fairness_budget=settings.fairness_budget, wake=wake,
                      shutdown=shutdown, delta_interval_s=settings.delta_interval_ms / 1000,
                      stream=settings.stream_upstream, relay=deferred.relay,
                      dequeued=deferred.dequeued, circuit=circuit, registry=registry, wake_later=wake.later)
    return Runtime(settings=settings, mailbox=mailbox, drainer=drainer, keeper=keeper, wake=wake,
                   shutdown=shutdown)


@cache
def _runtime_for(pid: int) -> Runtime:
    from ..celery_app import app

    return build_runtime(get_settings(), app)


def get_runtime() -> Runtime:
    # Keyed by pid: a prefork child must not reuse the parent's sockets.
    return _runtime_for(os.getpid())
