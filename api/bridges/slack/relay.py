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

import redis.asyncio
from slack_sdk.web.async_client import AsyncWebClient

from parley.worker.events.models import Event
from parley.worker.log import get_logger
from parley.worker.settings import Settings
from parley.worker.store.connections import async_client
from parley.worker.store.ingress import Ingress
from parley.worker.store.keys import Keys

from ..relay import (
    CLAIM_IDLE_MS,
    Assignment,
    Posted,
    TurnFeed,
    follow_hub,
    follow_turn,
    next_event,
    serve_feed,
    starts_over,
)
from .client import PLATFORM, web_client
from .render import MESSAGE_MAX_CHARS, STREAM_INTERVAL_S, THINKING, failure_notice, retrying_status
from .reply import SlackReply

log = get_logger(__name__)

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
        await serve_feed(self.feed, self.hub, self.handle, stop)

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
        await reply.resume()
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
            # From the last start-over on record: a takeover never replays the attempts already replaced.
            async for event in follow_turn(self.hub, assignment, after_seq=reply.restart_seq):
                await events.put(event)

        producer = asyncio.create_task(pump())
        text = ""
        try:
            while True:
                event = await next_event(events, STREAM_INTERVAL_S)
                if event is None:
                    if producer.done():
                        producer.result()  # its error, if it stopped without the terminal event
                    await reply.flush(text)
                    continue
                if event.type == "response.delta":
                    text += event.delta
                    await reply.flush(text)
                elif starts_over(event):
                    text = ""  # the new attempt's deltas are a reply of their own
                    await reply.restart(event.seq)
                    if event.type == "turn.retrying":
                        await reply.status(retrying_status(event.cause))
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
