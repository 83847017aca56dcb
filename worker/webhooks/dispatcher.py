"""The webhook dispatcher (``parley webhooks run``): its own process, so a receiver that is down or hangs
never slows a turn.

Two loops share one event loop and one ``httpx.AsyncClient``:

- the **reader** takes terminal events from the replies stream with the consumer group (entries of a dead
  dispatcher are reclaimed with ``XAUTOCLAIM``) and makes each one's first attempt;
- the **retrier** takes due deliveries from the retry set (under a lease) and tries them again.

Neither ever sleeps on a failure: a failed attempt is written to the retry set with its next due time and the
loops go on. Attempts run as tasks, at most ``webhook_concurrency`` at once and
``webhook_per_url_concurrency`` per URL; a URL with that many in flight and as many again waiting gets its
further deliveries put in the retry set at once (a "busy" failure), so a hanging receiver holds only its own
share of the dispatcher.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio

from ..keys import Keys
from ..log import get_logger
from ..metrics import WEBHOOK_FAILURES, WEBHOOKS_DEAD_LETTERED, WEBHOOKS_DELIVERED
from ..settings import Settings
from .policy import Backoff, after_failure, delivered
from .signing import Signer
from .store import Entry, Record, Target, WebhookStore

log = get_logger(__name__)

READ_BATCH = 100
READ_BLOCK_MS = 1000
RETRY_POLL_S = 0.2
REDIS_RETRY_S = 1.0
LEASE_MARGIN_S = 5.0
"""A retry taken by a dispatcher is held for three timeouts plus this: it may wait one timeout for its URL's
slot and take another to POST, so the lease only runs out when the dispatcher died."""
WAITING_PER_URL = 1
"""Attempts that may wait for a URL's slots, as a multiple of its concurrency, before more are deferred."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str
    """``"2xx"``, the status class (``"5xx"``), ``"timeout"``, ``"connect"``, ``"busy"``..."""
    detail: str


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Dispatcher:
    def __init__(self, settings: Settings, client: redis.asyncio.Redis, http: httpx.AsyncClient, *,
                 name: str | None = None) -> None:
        if settings.webhook_secret is None:
            raise ValueError("PARLEY_WEBHOOK_SECRET is not set")
        self.settings = settings
        self.store = WebhookStore(client, Keys(settings.key_prefix))
        self.http = http
        self.name = name or consumer_name()
        self.signer = Signer(settings.webhook_secret.get_secret_value())
        self.backoff = Backoff(base_s=settings.webhook_backoff_base_s, max_s=settings.webhook_backoff_max_s,
                               retry_for_s=settings.webhook_retry_for_s)
        self.default = (Target(settings.webhook_url, frozenset(settings.webhook_events))
                        if settings.webhook_url else None)
        self.lease_s = 3 * settings.webhook_timeout_s + LEASE_MARGIN_S
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight: set[str] = set()
        """Stream entries this process is delivering, so its own XAUTOCLAIM never starts them twice."""
        self.slots: dict[str, asyncio.Semaphore] = {}
        self.load: defaultdict[str, int] = defaultdict(int)
        """Attempts running or waiting, per URL."""

    async def run(self, stop: asyncio.Event) -> None:
        await self.store.ensure_group()
        log.info("webhooks_started", consumer=self.name, default_url=bool(self.default))
        loops = [asyncio.create_task(self._reader(stop)), asyncio.create_task(self._retrier(stop))]
        try:
            await asyncio.gather(*loops)
        finally:
            for loop in loops:
                loop.cancel()
            # In-flight attempts end within the timeout; whatever they leave is pending or leased, not lost.
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=self.settings.webhook_timeout_s + 1)

    def room(self) -> int:
        return self.settings.webhook_concurrency - len(self.tasks)

    async def _wait_for_room(self, stop: asyncio.Event) -> None:
        while self.room() <= 0 and not stop.is_set():
            await asyncio.sleep(0.01)

    async def _resilient(self, stop: asyncio.Event, step: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run ``step`` until stopped; a Redis outage pauses the loop instead of ending the process (the
        client reconnects by itself)."""
        while not stop.is_set():
            try:
                await step(stop)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("webhooks_redis_unavailable", error=str(exc))
                await asyncio.sleep(REDIS_RETRY_S)

    async def _reader(self, stop: asyncio.Event) -> None:
        await self._resilient(stop, self._read_once)

    async def _retrier(self, stop: asyncio.Event) -> None:
        await self._resilient(stop, self._retry_once)

    async def _read_once(self, stop: asyncio.Event) -> None:
        await self._wait_for_room(stop)
        entries = await self.store.read(self.name, count=min(READ_BATCH, max(self.room(), 1)),
                                        block_ms=READ_BLOCK_MS,
                                        min_idle_ms=self.settings.webhook_claim_idle_ms)
        fresh = [e for e in entries if e.entry_id not in self.in_flight]
        targets = await self.store.targets({e.record.conversation_id for e in fresh}, self.default)
        skipped: list[str] = []
        for entry in fresh:
            target = targets.get(entry.record.conversation_id)
            if target is None or entry.record.type not in target.events:
                skipped.append(entry.entry_id)
                continue
            self.in_flight.add(entry.entry_id)
            self._spawn(self._deliver(entry.record, target.url, entry))
        await self.store.ack(*skipped)

    async def _retry_once(self, stop: asyncio.Event) -> None:
        await self._wait_for_room(stop)
        records = await self.store.claim_due(now=time.time(), lease_s=self.lease_s,
                                             count=max(self.room(), 1))
        if not records:
            try:
                await asyncio.wait_for(stop.wait(), timeout=RETRY_POLL_S)
            except TimeoutError:
                pass
            return
        targets = await self.store.targets({r.conversation_id for r in records}, self.default)
        for record in records:
            target = targets.get(record.conversation_id)
            if target is None:
                # The conversation's webhook was removed (or it was deleted) while this waited.
                log.info("webhook_dropped", conversation_id=record.conversation_id,
                         turn_id=record.turn_id, delivery_id=record.id, reason="no webhook any more")
                await self.store.done(record)
                continue
            self._spawn(self._deliver(record, target.url, None))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, record: Record, url: str, entry: Entry | None) -> None:
        bound = log.bind(conversation_id=record.conversation_id, turn_id=record.turn_id,
                         delivery_id=record.id, attempt=record.failures + 1)
        try:
            outcome = await self._post_when_free(record, url)
            if outcome.ok:
                await self.store.done(record, entry_id=entry.entry_id if entry else None)
                WEBHOOKS_DELIVERED.inc()
                bound.info("webhook_delivered", status=outcome.detail)
                return
            WEBHOOK_FAILURES.labels(reason=outcome.reason).inc()
            now = time.time()
            failed = record.failed(f"{outcome.reason}: {outcome.detail}"[:500], url=url, now=now)
            verdict = after_failure(self.backoff, failures=failed.failures, first_at=failed.first_at, now=now)
            if verdict.dead:
                await self.store.dead_letter(failed, entry_id=entry.entry_id if entry else None)
                WEBHOOKS_DEAD_LETTERED.inc()
                bound.warning("webhook_dead_lettered", reason=outcome.reason, detail=outcome.detail,
                              failures=failed.failures)
            else:
                await self.store.schedule(failed, verdict.due_at, entry_id=entry.entry_id if entry else None)
                bound.info("webhook_retry", reason=outcome.reason, detail=outcome.detail,
                           retry_in_s=round(verdict.due_at - now, 2))
        except redis.RedisError as exc:
            # Nothing was moved: the entry stays pending (reclaimed later) or the retry's lease runs out.
            bound.warning("webhook_store_error", error=str(exc))
        finally:
            if entry is not None:
                self.in_flight.discard(entry.entry_id)

    async def _post_when_free(self, record: Record, url: str) -> Outcome:
        limit = self.settings.webhook_per_url_concurrency
        if self.load[url] >= limit * (1 + WAITING_PER_URL):
            return Outcome(False, "busy", f"{self.load[url]} deliveries to this URL running or waiting")
        slots = self.slots.setdefault(url, asyncio.Semaphore(limit))
        self.load[url] += 1
        try:
            async with slots:
                return await self._post(record, url)
        finally:
            self.load[url] -= 1
            if not self.load[url]:
                del self.load[url]
                self.slots.pop(url, None)

    async def _post(self, record: Record, url: str) -> Outcome:
        headers = {"content-type": "application/json", "user-agent": "parley-webhooks",
                   **self.signer.headers(record.id, record.payload)}
        try:
            # One budget for the whole exchange: httpx's timeouts are per phase, so a receiver trickling
            # bytes could otherwise hold the attempt for far longer.
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                response = await self.http.post(url, content=record.payload.encode(), headers=headers)
        except TimeoutError:
            return Outcome(False, "timeout", f"no answer within {self.settings.webhook_timeout_s:g} s")
        except httpx.TimeoutException as exc:
            return Outcome(False, "timeout", type(exc).__name__)
        except httpx.ConnectError as exc:
            return Outcome(False, "connect", str(exc) or type(exc).__name__)
        except httpx.HTTPError as exc:
            return Outcome(False, "http_error", f"{type(exc).__name__}: {exc}")
        if delivered(response.status_code):
            return Outcome(True, "2xx", str(response.status_code))
        return Outcome(False, f"{response.status_code // 100}xx", str(response.status_code))


def make_http(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.webhook_timeout_s, connect=min(5.0, settings.webhook_timeout_s))
    limits = httpx.Limits(max_connections=settings.webhook_concurrency,
                          max_keepalive_connections=settings.webhook_concurrency)
    # follow_redirects off: a redirect is the receiver's misconfiguration, and following it would re-sign
    # nothing but send the body where the conversation never named.
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)


async def serve(settings: Settings, *, name: str | None = None) -> None:
    """Run a dispatcher until SIGTERM or SIGINT."""
    import signal

    from prometheus_client import start_http_server

    from ..connections import async_client

    if settings.webhook_metrics_port:
        start_http_server(settings.webhook_metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = async_client(settings)
    async with make_http(settings) as http:
        try:
            await Dispatcher(settings, client, http, name=name).run(stop)
        finally:
            await client.aclose()
