"""One turn's reply as Slack messages in its thread: streamed (``chat.startStream`` / ``appendStream`` /
``stopStream``) or, without streaming, posted and then edited (``chat.postMessage`` / ``chat.update``).

What went out is recorded in the turn's ``Posted`` record after each call (the messages' ts and where each
starts in the text, the characters sent, whether the last message still takes text), so a relay that takes
the turn over sends only the rest, into the same message. A stream the dead relay left open is stopped and
the message edited from then on (``resume``): an edit sets its whole text, so a piece that reached Slack
without reaching the record is not shown twice. A relay killed between starting a message and recording it
leaves that message behind (Slack has no idempotency key): the window is that one call.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from parley.worker.log import get_logger

from ..relay import Posted
from .render import MESSAGE_MAX_CHARS, STREAM_INTERVAL_S, UPDATE_INTERVAL_S, due, take

log = get_logger(__name__)

NOT_STREAMING = "message_not_in_streaming_state"


def _messages(raw: str | None) -> list[tuple[str, int]]:
    pairs = (part.rsplit("@", 1) for part in (raw or "").split(",") if part)
    return [(ts, int(start)) for ts, start in pairs]


class SlackReply:
    def __init__(self, web: AsyncWebClient, posted: Posted, record: dict[str, str], *,
                 metadata: dict[str, str], streaming: bool,
                 message_max_chars: int = MESSAGE_MAX_CHARS) -> None:
        self.web, self.posted, self.limit = web, posted, message_max_chars
        self.channel, self.thread_ts = metadata["channel"], metadata["thread_ts"]
        self.recipient = {"recipient_user_id": metadata.get("user"),
                          "recipient_team_id": metadata.get("user_team") or metadata.get("team")}
        self.mode = record.get("mode") or ("stream" if streaming else "post")
        self.messages = _messages(record.get("messages"))
        self.sent = int(record.get("sent_chars") or 0)
        self.open = record.get("open") == "1"
        self.restart_seq = int(record.get("restart_seq") or 0)
        """The seq of the last start-over handled (0: none): the messages on record are the next attempt's."""
        self.last_write: float | None = None

    @property
    def started(self) -> bool:
        return bool(self.messages)

    async def _save(self, **more: Any) -> None:
        messages = ",".join(f"{ts}@{start}" for ts, start in self.messages)
        await self.posted.set(mode=self.mode, messages=messages, sent_chars=self.sent, open=int(self.open),
                              restart_seq=self.restart_seq, **more)

    async def status(self, text: str) -> None:
        """Best effort: the thread's "is thinking" line (Slack clears it when the bot posts)."""
        try:
            await self.web.assistant_threads_setStatus(channel_id=self.channel, thread_ts=self.thread_ts,
                                                       status=text)
        except SlackApiError as exc:
            log.info("slack_status_refused", error=exc.response.get("error"))
        except Exception as exc:  # noqa: BLE001 - a status line is not worth failing the reply for
            log.info("slack_status_failed", error=type(exc).__name__)

    async def flush(self, text: str, *, final: bool = False) -> None:
        """Send what ``text`` has beyond what was sent, as far as the throttle allows (all of it when
        ``final``), ending a message where it is full and going on in the next one."""
        while True:
            start = self.messages[-1][1] if self.open else self.sent
            end, full = take(text, start=start, sent=self.sent, limit=self.limit)
            if end > self.sent:
                if self.open and not await self._may_write(final=final or full):
                    return
                await self._write(text, start, end)
            if not full:
                break
            await self.close()
        if final:
            await self.close()

    async def _may_write(self, *, final: bool) -> bool:
        interval = STREAM_INTERVAL_S if self.mode == "stream" else UPDATE_INTERVAL_S
        now = time.monotonic()
        if due(self.last_write, now, interval):
            return True
        if not final:
            return False
        assert self.last_write is not None
        await asyncio.sleep(interval - (now - self.last_write))
        return True

    async def _write(self, text: str, start: int, end: int) -> None:
        if not self.open:
            ts = await self._new_message(text[self.sent:end])
            self.messages.append((ts, self.sent))
            self.open = True
        else:
            ts = self.messages[-1][0]
            if self.mode == "stream":
                try:
                    await self.web.chat_appendStream(channel=self.channel, ts=ts,
                                                     markdown_text=text[self.sent:end])
                except SlackApiError as exc:
                    if exc.response.get("error") != NOT_STREAMING:
                        raise
                    # The stream ended without us (a timeout, our stop before a crash): edit it instead.
                    self.mode = "post"
            if self.mode == "post":
                await self.web.chat_update(channel=self.channel, ts=ts, text=text[start:end])
        self.sent, self.last_write = end, time.monotonic()
        await self._save()

    async def _new_message(self, part: str) -> str:
        if self.mode == "stream":
            try:
                started = await self.web.chat_startStream(channel=self.channel, thread_ts=self.thread_ts,
                                                          markdown_text=part, **self.recipient)
                return str(started["ts"])
            except SlackApiError as exc:
                # Refused (a plan without streaming, a missing scope): the same reply, posted and edited.
                log.warning("slack_streaming_refused", error=exc.response.get("error"))
                self.mode = "post"
        posted = await self.web.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=part)
        return str(posted["ts"])

    async def close(self) -> None:
        """End the current message: a stream is stopped (in every path: a stream left open may lose its
        text). Best effort on the way out of a failure."""
        if not self.open:
            return
        if self.mode == "stream":
            try:
                await self.web.chat_stopStream(channel=self.channel, ts=self.messages[-1][0])
            except SlackApiError as exc:
                if exc.response.get("error") != NOT_STREAMING:
                    raise
        self.open = False
        await self._save()

    async def stop_on_failure(self) -> None:
        """The relay failed mid-reply: stop the stream, and mark the message as edited from now on, so the
        relay that retries the turn goes on in the same message (``chat.update``)."""
        if not (self.open and self.mode == "stream"):
            return
        try:
            await self.web.chat_stopStream(channel=self.channel, ts=self.messages[-1][0])
        except Exception as exc:  # noqa: BLE001 - already failing: the first error is the one that matters
            log.warning("slack_stop_failed", error=type(exc).__name__)
            return
        self.mode = "post"
        try:
            await self._save()
        except Exception as exc:  # noqa: BLE001 - as above
            log.warning("slack_record_failed", error=type(exc).__name__)

    async def resume(self) -> None:
        """Taking over a reply that a relay left streaming (it was killed, so it could not stop it): the
        stream is stopped and the message edited from now on. The dead relay's last append may have reached
        Slack without reaching its record; an edit sets the message's whole text, where a second append
        would have shown that piece twice."""
        if self.open and self.mode == "stream":
            await self.stop_on_failure()

    async def notice(self, text: str) -> None:
        """A failed turn's notice, as a message of its own, once."""
        await self.close()
        posted = await self.web.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=text)
        await self._save(notice=posted["ts"])

    async def restart(self, seq: int) -> None:
        """A new attempt of the turn (its start-over event at ``seq``) writes its reply from the start, and
        what the last one streamed cannot be taken back from a stream: its messages go, and the reply starts
        again as a new message. The seq is recorded with the emptied messages, in one write."""
        await self._delete_messages()
        self.messages, self.sent, self.last_write, self.restart_seq = [], 0, None, seq
        await self._save()

    async def withdraw(self) -> None:
        """A turn answered by another one's reply (merged, superseded, interrupted, cancelled): what it had
        posted (an interrupted turn's start) goes, since the answering turn posts the whole answer."""
        await self._delete_messages()
        if not self.messages:
            await self.status("")  # the "is thinking" line, for a reply that never came

    async def _delete_messages(self) -> None:
        await self.close()
        for ts, _ in self.messages:
            try:
                await self.web.chat_delete(channel=self.channel, ts=ts)
            except SlackApiError as exc:
                log.info("slack_delete_refused", error=exc.response.get("error"))
