"""Which Slack events become turns, and of which conversation, and what their files become: pure functions
over the event's JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..attachments import Attachment, attachments_of, turn_input

USER_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
"""Message subtypes that are still a person writing to the bot (with files; a thread reply also sent to the
channel). Every other subtype (bot_message, message_changed, message_deleted, channel_join, ...) is Slack
telling about something, not a message to answer."""


@dataclass(frozen=True)
class SlackTurn:
    team: str
    channel: str
    ts: str
    """The message's own ts."""
    thread_ts: str
    """The thread the reply goes to: the message's thread, or the message itself when it starts one."""
    user: str
    user_team: str
    """The user's own workspace (another one in a Slack Connect channel): the streaming recipient."""
    text: str
    only_if_followed: bool
    """A thread reply in a channel that does not mention the bot: a turn only when parley already has the
    thread's conversation (the bot was mentioned in it), so the bot follows its threads and no others."""
    files: tuple[Attachment, ...] = field(default=())
    """The message's files (``url`` is Slack's ``url_private``: it needs the bot token)."""

    @property
    def key(self) -> str:
        return f"slack:{self.team}:{self.channel}:{self.thread_ts}"

    @property
    def metadata(self) -> dict[str, str]:
        """What the relay needs to post the reply (and ``recipient_*`` for streaming)."""
        return {"team": self.team, "channel": self.channel, "thread_ts": self.thread_ts, "ts": self.ts,
                "user": self.user, "user_team": self.user_team}


def _mention(bot_user_id: str) -> re.Pattern[str]:
    return re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>")


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """The text without the bot's ``<@U...>`` mentions (Slack writes them into the text), spaces squeezed
    where they were."""
    if bot_user_id:
        text = _mention(bot_user_id).sub(" ", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def turn_for_event(event: Mapping[str, Any], *, bot_user_id: str | None,
                   team_id: str | None = None) -> SlackTurn | None:
    """The turn an Events API ``event`` asks for, or None when it asks for none.

    Answered: an ``app_mention``; a message in a DM (``channel_type: im``); a thread reply in a channel (as
    ``only_if_followed``). Not: the bot's own and other bots' messages, edits, deletes, joins and the other
    subtypes, top-level channel messages without a mention, and a channel message that mentions the bot
    (Slack sends it as ``app_mention`` too, under another event_id: answering both would answer twice)."""
    kind, subtype = event.get("type"), event.get("subtype")
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if kind not in ("app_mention", "message") or not user or not channel or not ts:
        return None
    if event.get("bot_id") or event.get("bot_profile") or (bot_user_id and user == bot_user_id):
        return None
    if subtype is not None and subtype not in USER_SUBTYPES:
        return None
    raw = str(event.get("text") or "")
    thread_ts = event.get("thread_ts")
    only_if_followed = False
    if kind == "message" and event.get("channel_type") != "im":
        mentioned = bool(bot_user_id) and _mention(str(bot_user_id)).search(raw) is not None
        if mentioned or not thread_ts or thread_ts == ts:
            return None
        only_if_followed = True
    text = strip_mention(raw, bot_user_id)
    # The app's workspace (the envelope's) names the conversation; the event's may be a Connect guest's.
    team = team_id or event.get("team")
    files = attachments_of(event.get("files"), url="url_private", kind="mimetype", name="name")
    if not (text or files) or not team:
        return None
    return SlackTurn(team=str(team), channel=str(channel), ts=str(ts), thread_ts=str(thread_ts or ts),
                     user=str(user), user_team=str(event.get("user_team") or event.get("team") or team),
                     text=text, only_if_followed=only_if_followed, files=files)


def slack_input(turn: SlackTurn, downloaded: dict[str, str]) -> str | list[dict[str, Any]]:
    """The turn's input: its text alone without files; else one user message with the downloaded images
    (``downloaded``: url_private → data URL) as ``input_image`` parts and every other file named in the
    text."""
    return turn_input(turn.text, turn.files, images=downloaded)
