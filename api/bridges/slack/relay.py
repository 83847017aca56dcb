"""``parley slack-relay``: posts the replies of the turns the Slack bridge accepted into their threads, while
they are written.

Each announced turn (``TurnFeed("slack")``) is followed from the start of its conversation's stream to its
terminal event: a status line while it runs, the reply streamed (or posted and edited), a short notice if it
failed, nothing for a turn another one answers. The entry is acknowledged after the terminal event is
handled; a relay that dies leaves it to another one (or to itself, restarted), which goes on from the turn's
``Posted`` record. Slack's 429s are waited out per call by slack_sdk's retry handlers (``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio
from slack_sdk.web.async_client import AsyncWebClient

from parley.worker.events.models import Event
from parley.worker.log import get_logger
from parley.worker.settings import Settings
from parley.worker.store.connections import async_client
from parley.worker.store.ingress import Ingress
from parley.worker.store.keys import Keys

from ..relay import CLAIM_IDLE_MS, Assignment, InOrder, Posted, TurnFeed, follow_hub, follow_turn
from .client import PLATFORM, web_client
from .render import MESSAGE_MAX_CHARS, STREAM_INTERVAL_S, failure_notice
from .reply import SlackReply

log = get_logger(__name__)

THINKING = "is thinking…"
ANSWERED_ELSEWHERE = frozenset({"turn.merged", "turn.superseded", "turn.interrupted", "turn.cancelled"})


class SlackRelay:
    def __init__(self, settings: Settings, client: redis.asyncio.Redis, web: AsyncWebClient, *,
                 consumer: str | None = None, claim_idle_ms: int = CLAIM_IDLE_MS,
                 message_max_chars: int = MESSAGE_MAX_CHARS) -> None:
        self.settings, self.client, self.web = settings, client, web
        self.message_max_chars = message_max_chars
        self.keys = Keys(settings.key_prefix)
        self.ingress = Ingress(client, settings)
        self.feed = TurnFeed(client, self.keys, PLATFORM, consumer=consumer, claim_idle_ms=claim_idle_ms)
        self.hub = follow_hub(settings.redis_url_required, client, self.keys)

    async def run(self, stop: asyncio.Event) -> None:
        await self.feed.ensure_group()
        await self.hub.start()
        working: dict[str, tuple[Assignment, asyncio.Task[None]]] = {}
        in_order = InOrder()  # a thread's replies in the order of its messages
        touched = time.monotonic()
        try:
            while not stop.is_set():
                for assignment in await self.feed.next(block_ms=200):
                    if assignment.entry_id in working:
                        continue
                    if any(a.turn_id == assignment.turn_id for a, _ in working.values()):
                        # Announced again (a Slack retry) while this relay posts it: the record's owner is
                        # this relay, so only this check keeps the turn from being posted twice.
                        await self.feed.ack(assignment)
                        continue
                    task = in_order.start(assignment.conversation_id, lambda a=assignment: self.handle(a))
                    working[assignment.entry_id] = (assignment, task)
                for entry_id, (_, task) in list(working.items()):
                    if task.done():
                        del working[entry_id]
                        if not task.cancelled() and (exc := task.exception()) is not None:
                            # Not acknowledged: the entry comes back once idle, here or at another relay.
                            log.warning("slack_relay_turn_failed", error=type(exc).__name__,
                                        detail=str(exc)[:200])
                if time.monotonic() - touched > self.feed.claim_idle_ms / 3000:
                    await self.feed.touch([a for a, _ in working.values()])
                    touched = time.monotonic()
        finally:
            for _, task in working.values():
                task.cancel()
            for _, task in working.values():
                with contextlib.suppress(BaseException):
                    await task
            await self.hub.stop()

    async def handle(self, assignment: Assignment) -> None:
        posted = Posted(self.client, self.keys, PLATFORM, assignment, ttl_s=self.settings.retention_s)
        if not await posted.claim(self.feed.consumer, reclaimed=assignment.reclaimed):
            await self.feed.ack(assignment)  # another entry of the same turn (a retry): its owner posts
            return
        record = await posted.get()
        turn = await self.ingress.get_turn(assignment.turn_id)
        if record.get("done") or turn is None or "channel" not in turn.metadata:
            await self.feed.ack(assignment)
            return
        reply = SlackReply(self.web, posted, record, metadata=turn.metadata,
                           streaming=self.settings.slack_streaming, message_max_chars=self.message_max_chars)
        if not reply.started:
            await reply.status(THINKING)
        try:
            await self._follow(assignment, reply)
        except BaseException:
            await reply.stop_on_failure()
            raise
        await posted.set(done=1)
        await self.feed.ack(assignment)

    async def _follow(self, assignment: Assignment, reply: SlackReply) -> None:
        # Events come through a queue so that a pause in the deltas still lets the throttled text go out.
        events: asyncio.Queue[Event] = asyncio.Queue()

        async def pump() -> None:
            async for event in follow_turn(self.hub, assignment):
                await events.put(event)

        producer = asyncio.create_task(pump())
        text = ""
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), timeout=STREAM_INTERVAL_S)
                except TimeoutError:
                    if producer.done():
                        producer.result()  # its error, if it stopped without the terminal event
                    await reply.flush(text)
                    continue
                if event.type == "response.delta":
                    text += event.delta
                    await reply.flush(text)
                elif event.type == "turn.completed":
                    await reply.flush(event.output_text or text, final=True)
                    return
                elif event.type == "turn.failed":
                    await reply.notice(failure_notice(event.error.model_dump()))
                    return
                elif event.type in ANSWERED_ELSEWHERE:
                    await reply.withdraw()
                    return
        finally:
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer


async def serve(settings: Settings, *, stop: asyncio.Event | None = None, claim_idle_ms: int = CLAIM_IDLE_MS,
                message_max_chars: int = MESSAGE_MAX_CHARS) -> None:
    """Run the relay until ``stop`` is set (forever without one). ``message_max_chars`` below Slack's limit
    shows the splitting with short replies (tests)."""
    client = async_client(settings)
    try:
        relay = SlackRelay(settings, client, web_client(settings), claim_idle_ms=claim_idle_ms,
                           message_max_chars=message_max_chars)
        await relay.run(stop or asyncio.Event())
    finally:
        await client.aclose()
