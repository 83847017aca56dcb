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

from ..log import get_logger
from ..metrics import WEBHOOK_FAILURES, WEBHOOKS_DEAD_LETTERED, WEBHOOKS_DELIVERED
from ..settings import Settings
from ..store.connections import REDIS_ERRORS
from ..store.keys import Keys
from .policy import Backoff, Verdict, after_failure, delivered
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
        """Attempts admitted (running or waiting for a slot), per URL."""

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
        busy: list[tuple[Record, str, str | None]] = []
        for entry in fresh:
            target = targets.get(entry.record.conversation_id)
            if target is None or entry.record.type not in target.events:
                skipped.append(entry.entry_id)
            elif not self._admit(target.url):
                busy.append((entry.record, target.url, entry.entry_id))
            else:
                self.in_flight.add(entry.entry_id)
                self._spawn(self._deliver(entry.record, target.url, entry))
        await self.store.ack(*skipped)
        await self._defer(busy)

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
        busy: list[tuple[Record, str, str | None]] = []
        for record in records:
            target = targets.get(record.conversation_id)
            if target is None:
                # The conversation's webhook was removed (or it was deleted) while this waited.
                log.info("webhook_dropped", conversation_id=record.conversation_id,
                         turn_id=record.turn_id, delivery_id=record.id, reason="no webhook any more")
                await self.store.done(record)
            elif not self._admit(target.url):
                busy.append((record, target.url, None))
            else:
                self._spawn(self._deliver(record, target.url, None))
        await self._defer(busy)

    def _admit(self, url: str) -> bool:
        """Count an attempt against its URL, unless that URL has a full share running or waiting already."""
        if self.load[url] >= self.settings.webhook_per_url_concurrency * (1 + WAITING_PER_URL):
            return False
        self.load[url] += 1
        return True

    def _release(self, url: str) -> None:
        self.load[url] -= 1
        if not self.load[url]:
            del self.load[url]
            self.slots.pop(url, None)

    async def _defer(self, busy: list[tuple[Record, str, str | None]]) -> None:
        """Deliveries to a URL with its share in use go straight to the retry set, in one round trip: a
        hanging receiver costs the dispatcher one write per delivery per backoff step, and no waiting."""
        if not busy:
            return
        now, later, entry_ids = time.time(), [], []
        for record, url, entry_id in busy:
            WEBHOOK_FAILURES.labels(reason="busy").inc()
            outcome = Outcome(False, "busy", "its share of POSTs in use")
            failed, verdict = self._failed(record, url, outcome, now)
            if verdict.dead:
                await self._dead_letter(failed, entry_id, "busy")
            else:
                later.append((failed, verdict.due_at))
                entry_ids += [entry_id] if entry_id else []
        await self.store.schedule_many(later, entry_ids=entry_ids)

    def _failed(self, record: Record, url: str, outcome: Outcome, now: float) -> tuple[Record, Verdict]:
        failed = record.failed(f"{outcome.reason}: {outcome.detail}"[:500], url=url, now=now)
        verdict = after_failure(self.backoff, failures=failed.failures, first_at=failed.first_at, now=now)
        return failed, verdict

    async def _dead_letter(self, failed: Record, entry_id: str | None, reason: str) -> None:
        await self.store.dead_letter(failed, entry_id=entry_id)
        WEBHOOKS_DEAD_LETTERED.inc()
        log.warning("webhook_dead_lettered", conversation_id=failed.conversation_id,
                    turn_id=failed.turn_id, delivery_id=failed.id, reason=reason, error=failed.last_error,
                    failures=failed.failures)

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
            failed, verdict = self._failed(record, url, outcome, now)
            if verdict.dead:
                await self._dead_letter(failed, entry.entry_id if entry else None, outcome.reason)
            else:
                await self.store.schedule(failed, verdict.due_at, entry_id=entry.entry_id if entry else None)
                bound.info("webhook_retry", reason=outcome.reason, detail=outcome.detail,
                           retry_in_s=round(verdict.due_at - now, 2))
        except REDIS_ERRORS as exc:
            # Nothing was moved: the entry stays pending (reclaimed later) or the retry's lease runs out.
            bound.warning("webhook_store_error", error=str(exc))
        finally:
            self._release(url)
            if entry is not None:
                self.in_flight.discard(entry.entry_id)

    async def _post_when_free(self, record: Record, url: str) -> Outcome:
        slots = self.slots.setdefault(url, asyncio.Semaphore(self.settings.webhook_per_url_concurrency))
        async with slots:
            return await self._post(record, url)

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

