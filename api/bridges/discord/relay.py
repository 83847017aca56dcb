"""``parley discord-relay``: the Discord bridge's replies. Each announced turn's deferred reply
(``@original``) is edited with the text as it is written, at most once a second, then with the final text;
a reply past 2,000 characters continues in follow-up messages. What was posted is in the turn's ``Posted``
record, so a relay that takes over a dead one's turn edits the same messages instead of posting new ones."""

from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio

from parley.worker.events.models import TERMINAL_TYPES, Event
from parley.worker.log import get_logger
from parley.worker.settings import Settings
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
from .render import edit_due, expired_notice, final_text, retrying_notice, split_message
from .rest import DiscordError, DiscordRest

log = get_logger(__name__)

PLATFORM = "discord"
EXPIRY_MARGIN_S = 30.0
"""This close to the interaction token's end, the reply says it cannot go on there (a last edit needs it)."""
TICK_S = 1.0
"""How often a turn with no new events checks the token's end."""


class Reply:
    """One turn's messages on Discord and what each one shows: a slash command's ``@original`` and its
    follow-ups (interaction webhooks), or, for a message the gateway bot answers (``reply_to``, no token),
    channel messages posted and edited with the bot token."""

    def __init__(self, rest: DiscordRest, posted: Posted, *, application_id: str, token: str | None,
                 token_ttl_s: float, channel_id: str, followups: list[str],
                 reply_to: str | None = None, restart_seq: int = 0) -> None:
        self.rest, self.posted = rest, posted
        self.application_id, self.token, self.channel_id = application_id, token, channel_id
        self.reply_to = reply_to if token is None else None
        self.deadline = (float("inf") if self.reply_to else time.monotonic() + token_ttl_s - EXPIRY_MARGIN_S)
        self.followups = followups
        """The messages posted: the follow-ups after ``@original``, or all of a channel reply's."""
        self.shown: list[str] = []
        self.text_shown = ""
        self.last_edit_s: float | None = None
        self.expired = token is None and self.reply_to is None
        self.restart_seq = restart_seq
        """The seq of the last start-over handled (0: none): the messages on record are the next attempt's."""

    async def show(self, text: str) -> None:
        """Make the messages show ``text``; only those whose part changed are edited."""
        if self.expired:
            return
        self.last_edit_s, self.text_shown = time.monotonic(), text
        try:
            for index, part in enumerate(split_message(text)):
                if index < len(self.shown) and self.shown[index] == part:
                    continue
                await self._send(index, part)
        except DiscordError as exc:
            if not exc.token_expired:
                raise
            log.warning("discord_token_expired", turn=self.posted.key.rsplit(":", 1)[-1])
            self.expired = True

    def behind(self, text: str) -> bool:
        """Whether the reply shows less than ``text`` (and can still be edited)."""
        return not self.expired and text != self.text_shown

    async def _send(self, index: int, part: str) -> None:
        first = 0 if self.reply_to else 1  # an interaction's first message is @original, there already
        if index < first:
            assert self.token is not None
            await self.rest.edit_original(self.application_id, self.token, part)
        elif index - first < len(self.followups) and await self._edit(self.followups[index - first], part):
            pass
        else:
            if self.token is None:
                message_id = await self.rest.channel_message(self.channel_id, part,
                                                             reply_to=self.reply_to if index == 0 else None)
            else:
                message_id = await self.rest.follow_up(self.application_id, self.token, part)
            self.followups[index - first:index - first + 1] = [message_id]
            # At once: a relay taking over edits this message rather than posting it again. A relay killed
            # between Discord's answer and this write leaves one duplicate: Discord has no idempotency key.
            await self.posted.set(followups=",".join(self.followups))
        self.shown[index:index + 1] = [part]

    async def _edit(self, message_id: str, part: str) -> bool:
        """Edit a posted message; False if it is gone (404: deleted by a restart whose record a relay killed
        in between did not write), so the part is posted anew in its place."""
        try:
            if self.token is None:
                await self.rest.edit_channel_message(self.channel_id, message_id, part)
            else:
                await self.rest.edit_follow_up(self.application_id, self.token, message_id, part)
        except DiscordError as exc:
            if exc.status != 404:
                raise
            return False
        return True

    async def restart(self, seq: int) -> None:
        """A new attempt (its start-over event at ``seq``) writes the reply from the start: the messages past
        the first (an interaction's follow-ups, a channel reply's continuations) go, so the earlier attempt's
        text is not left below the new one; the first is edited with the new text as it comes. Deleted
        before the record says so: a relay killed in between has the start-over again, its deletes of the
        gone ones are answered 404, and an edit of one posts it anew (``_send``)."""
        if not self.expired:  # expired: the token that could delete them is gone
            await self._delete_after(1 if self.reply_to else 0)
        self.restart_seq = seq
        await self.posted.set(followups=",".join(self.followups), restart_seq=seq)

    async def _delete_after(self, keep: int) -> None:
        """Delete the messages in ``followups`` past the first ``keep``; a 404 is one already gone."""
        for message_id in self.followups[keep:]:
            try:
                if self.token is None:
                    await self.rest.delete_channel_message(self.channel_id, message_id)
                else:
                    await self.rest.delete_follow_up(self.application_id, self.token, message_id)
            except DiscordError as exc:
                if exc.token_expired:
                    self.expired = True
                    return
                if exc.status != 404:
                    raise
        self.followups[keep:] = []
        self.shown[1:] = []  # the first message is the same one either way

    async def near_expiry(self, written: str, has_bot_token: bool) -> None:
        """Before the token runs out: say so in the reply, while it can still be edited."""
        if not self.expired and time.monotonic() >= self.deadline:
            await self.show(written + expired_notice(has_bot_token))
            self.expired = True

    async def finish(self, text: str) -> None:
        """The final text: in the reply, or (the token ran out) as channel messages with the bot token."""
        if not self.expired:
            await asyncio.sleep(edit_due(time.monotonic(), self.last_edit_s))
            await self.show(text)
        if not self.expired:
            return
        if self.rest.bot_token is None:
            log.warning("discord_reply_lost", reason="interaction token expired and no bot token",
                        channel_id=self.channel_id)
            return
        for part in split_message(text):
            await self.rest.channel_message(self.channel_id, part)


class DiscordRelay:
    def __init__(self, settings: Settings, client: redis.asyncio.Redis, rest: DiscordRest, *,
                 consumer: str | None = None, claim_idle_ms: int = CLAIM_IDLE_MS,
                 idle_s: float = 1.0) -> None:
        self.settings, self.client, self.rest, self.idle_s = settings, client, rest, idle_s
        self.keys = Keys(settings.key_prefix)
        self.feed = TurnFeed(client, self.keys, PLATFORM, consumer=consumer, claim_idle_ms=claim_idle_ms)
        self.consumer = self.feed.consumer
        self.hub = follow_hub(settings.redis_url_required, client, self.keys)

    async def run(self, stop: asyncio.Event) -> None:
        """Handle announced turns, each in a task of its own, until ``stop`` is set."""
        await serve_feed(self.feed, self.hub, self.handle, stop)

    async def handle(self, assignment: Assignment) -> None:
        posted = Posted(self.client, self.keys, PLATFORM, assignment, ttl_s=self.settings.retention_s)
        if not await posted.claim(self.consumer, reclaimed=assignment.reclaimed):
            await self.feed.ack(assignment)  # another entry of a turn some relay already handles
            return
        record = await posted.get()
        if record.get("done"):
            await self.feed.ack(assignment)
            return
        reply = await self._reply(assignment, posted, record)
        try:
            await self._follow(assignment, reply)
        except DiscordError as exc:
            if exc.status == 429 or not 400 <= exc.status < 500:
                raise  # still failing after the retries: left unacknowledged, for a takeover to try again
            # A refusal no retry changes (the app lost access to the channel, a message Discord refuses):
            # given up, rather than taken over again and again.
            log.warning("discord_reply_refused", turn_id=assignment.turn_id, status=exc.status, code=exc.code)
        await posted.set(done=1)
        await self.feed.ack(assignment)
        log.info("discord_reply_posted", turn_id=assignment.turn_id, messages=1 + len(reply.followups))

    async def _follow(self, assignment: Assignment, reply: Reply) -> None:
        """Show the turn's text as it is written until its terminal event. The events come through a queue
        so that the reply also moves while none arrive: text held back by the throttle goes out when its
        second is up, and the token's end is noticed during a long silence (a slow tool call)."""
        events: asyncio.Queue[Event] = asyncio.Queue()

        async def pump() -> None:
            # From the last start-over on record: a takeover never replays the attempts already replaced.
            async for event in follow_turn(self.hub, assignment, idle_s=self.idle_s,
                                           after_seq=reply.restart_seq):
                await events.put(event)

        pumping = asyncio.create_task(pump())
        written, has_bot_token = "", self.rest.bot_token is not None
        notice = ""  # shown instead of nothing while a retry is awaited, until the text comes
        try:
            while True:
                wanted = written or notice
                behind = reply.behind(wanted)
                wait = edit_due(time.monotonic(), reply.last_edit_s) if behind else TICK_S
                event = await next_event(events, max(wait, 0.01))
                if event is None and pumping.done():
                    pumping.result()  # the follower died: its error is this turn's
                if event is None:
                    pass
                elif starts_over(event):
                    # A new attempt writes its reply from the start: the next edit shows its text alone.
                    # Until it comes, a notice stands in for the earlier attempt's text (never an empty edit).
                    written = ""
                    notice = retrying_notice(getattr(event, "cause", None))
                    await reply.restart(event.seq)
                elif event.type == "response.delta":
                    written += getattr(event, "delta", "")
                    notice = ""
                elif event.type in TERMINAL_TYPES:
                    await reply.finish(final_text(event, written))
                    return
                wanted = written or notice
                if reply.behind(wanted) and edit_due(time.monotonic(), reply.last_edit_s) == 0:
                    await reply.show(wanted)
                await reply.near_expiry(written, has_bot_token)
        finally:
            pumping.cancel()

    async def _reply(self, assignment: Assignment, posted: Posted, record: dict[str, str]) -> Reply:
        conv, turn_id = assignment.conversation_id, assignment.turn_id
        token_key = self.keys.discord_interaction_token(conv, turn_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.turn(conv, turn_id), "metadata")
            pipe.get(token_key)
            pipe.ttl(token_key)
            metadata_json, token, ttl = await pipe.execute()
        metadata = json.loads(metadata_json) if metadata_json else {}
        followups = [id_ for id_ in record.get("followups", "").split(",") if id_]
        application_id = metadata.get("application_id") or self.settings.discord_application_id or ""
        return Reply(self.rest, posted, token=token, token_ttl_s=max(0, int(ttl or 0)),
                     application_id=application_id, channel_id=metadata.get("channel_id", ""),
                     followups=followups, reply_to=metadata.get("message_id"),
                     restart_seq=int(record.get("restart_seq") or 0))


async def serve(settings: Settings) -> None:
    """Run a relay until SIGTERM or SIGINT (as many as you like: they share the turns)."""
    import signal

    import httpx

    from parley.worker.store.connections import async_client

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = async_client(settings)
    bot_token = settings.discord_bot_token.get_secret_value() if settings.discord_bot_token else None
    # No redirects: the URLs carry interaction tokens, which go to Discord only.
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0), follow_redirects=False) as http:
        try:
            await DiscordRelay(settings, client, DiscordRest(http, api_url=settings.discord_api_url,
                                                             bot_token=bot_token)).run(stop)
        finally:
            await client.aclose()
