"""What a Discord interaction becomes, decided from its body alone (no I/O), so every case is a plain test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..attachments import Attachment, attachments_of, images_of, turn_input

PING = 1
APPLICATION_COMMAND = 2

PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
EPHEMERAL = 1 << 6

STRING_OPTION = 3
ATTACHMENT_OPTION = 11


@dataclass(frozen=True)
class DiscordTurn:
    """A slash command that asks the bot something: the turn it becomes and where its reply goes."""

    text: str
    key: str
    """The conversation key, ``discord:{guild_id or "dm"}:{channel_id}``: one conversation per channel (a
    thread has a channel id of its own, so each thread is a conversation)."""
    interaction_id: str
    application_id: str
    channel_id: str
    user_id: str
    token: str = field(repr=False)
    """The interaction's 15-minute credential to edit the reply: kept out of ``repr`` (and so out of any log
    line that prints the turn) and never in ``metadata``."""
    attachments: tuple[Attachment, ...] = ()

    @property
    def idempotency_key(self) -> str:
        return self.interaction_id

    @property
    def input(self) -> str | list[dict[str, Any]]:
        return discord_input(self.text, self.attachments)

    @property
    def metadata(self) -> dict[str, str]:
        """What the turn carries for its events and webhooks: ids only, never the token."""
        return {"platform": "discord", "application_id": self.application_id,
                "interaction_id": self.interaction_id, "channel_id": self.channel_id, "user_id": self.user_id}


def discord_input(text: str, attachments: tuple[Attachment, ...]) -> str | list[dict[str, Any]]:
    """The turn's input: the text alone without attachments; else one user message with each image as an
    ``input_image`` of its attachment URL (Discord's CDN serves it without a token) and every other file
    named in the text."""
    return turn_input(text, attachments, images={image.url: image.url for image in images_of(attachments)})


def attachments_from(raw: Any) -> tuple[Attachment, ...]:
    """Discord attachment objects (``url``, ``content_type``, ``filename``, ``size``)."""
    return attachments_of(raw, url="url", kind="content_type", name="filename")


def _attachment_ids(options: list[dict[str, Any]]) -> list[str]:
    """The values of the command's ATTACHMENT options (ids into ``data.resolved.attachments``), nested
    (subcommand) options included."""
    ids: list[str] = []
    for option in options:
        if option.get("type") == ATTACHMENT_OPTION:
            ids.append(str(option.get("value")))
        if isinstance(option.get("options"), list):
            ids += _attachment_ids(option["options"])
    return ids


def _resolved_attachments(data: dict[str, Any]) -> tuple[Attachment, ...]:
    resolved = (data.get("resolved") or {}).get("attachments") or {}
    return attachments_from([resolved[i] for i in _attachment_ids(list(data.get("options") or []))
                             if i in resolved])


def _user_id(body: dict[str, Any]) -> str:
    # In a guild the invoker is under member.user; in a DM under user.
    member = body.get("member") or {}
    user = member.get("user") or body.get("user") or {}
    return str(user.get("id") or "")


def _first_string_option(options: list[dict[str, Any]]) -> str | None:
    for option in options:
        if option.get("type") == STRING_OPTION and isinstance(option.get("value"), str):
            return str(option["value"])
        # A subcommand (or group) nests its own options: the prompt may be one level down.
        if isinstance(option.get("options"), list):
            nested = _first_string_option(option["options"])
            if nested is not None:
                return nested
    return None


def turn_for_interaction(body: dict[str, Any], *, command: str) -> DiscordTurn | None:
    """The turn an interaction asks for: an APPLICATION_COMMAND named ``command`` with a non-blank string
    option and the ids a reply needs; anything else (other commands, components, autocomplete) is ``None``."""
    if body.get("type") != APPLICATION_COMMAND:
        return None
    data = body.get("data") or {}
    if data.get("name") != command:
        return None
    text = _first_string_option(list(data.get("options") or []))
    channel_id = str(body.get("channel_id") or (body.get("channel") or {}).get("id") or "")
    interaction_id, application_id = str(body.get("id") or ""), str(body.get("application_id") or "")
    token = str(body.get("token") or "")
    if not (text and text.strip() and channel_id and interaction_id and application_id and token):
        return None
    return DiscordTurn(text=text, key=f"discord:{body.get('guild_id') or 'dm'}:{channel_id}",
                       interaction_id=interaction_id, application_id=application_id, channel_id=channel_id,
                       user_id=_user_id(body), token=token,
                       attachments=_resolved_attachments(data))


@dataclass(frozen=True)
class MessageTurn:
    """A channel message that asks the gateway bot something (a DM, or a message mentioning it): the turn
    it becomes; the relay answers it with the bot token, as a reply to the message."""

    text: str
    key: str
    """The same key as a slash command's in that channel: both ways of asking share the conversation."""
    message_id: str
    application_id: str
    channel_id: str
    user_id: str
    token: str = ""
    """No interaction token: the reply is a channel message."""
    attachments: tuple[Attachment, ...] = ()

    @property
    def idempotency_key(self) -> str:
        return f"message:{self.message_id}"

    @property
    def input(self) -> str | list[dict[str, Any]]:
        return discord_input(self.text, self.attachments)

    @property
    def metadata(self) -> dict[str, str]:
        return {"platform": "discord", "application_id": self.application_id, "message_id": self.message_id,
                "channel_id": self.channel_id, "user_id": self.user_id}


def turn_for_message(*, message_id: str, channel_id: str, guild_id: str | None, author_id: str,
                     author_is_bot: bool, content: str, mentioned_ids: list[str], bot_user_id: str,
                     application_id: str,
                     attachments: list[dict[str, Any]] | None = None) -> MessageTurn | None:
    """The turn a gateway message asks for: a DM, or a guild message that mentions the bot, from a person
    (never a bot: two bots would answer each other forever), with text besides the mention or attachments
    (Discord's attachment objects)."""
    if author_is_bot or author_id == bot_user_id:
        return None
    if guild_id is not None and bot_user_id not in mentioned_ids:
        return None
    text = content.replace(f"<@{bot_user_id}>", "").replace(f"<@!{bot_user_id}>", "").strip()
    files = attachments_from(attachments)
    if not (text or files):
        return None
    return MessageTurn(text=text, key=f"discord:{guild_id or 'dm'}:{channel_id}", message_id=message_id,
                       application_id=application_id, channel_id=channel_id, user_id=author_id,
                       attachments=files)


def unknown_command_answer(body: dict[str, Any], *, command: str) -> dict[str, Any]:
    """The answer to an interaction that is not a turn: an ephemeral message, so Discord shows the user why
    nothing happens (a 4xx would read as a broken endpoint)."""
    name = (body.get("data") or {}).get("name")
    if body.get("type") == APPLICATION_COMMAND and name == command:
        says = f"Give `/{command}` something to ask, e.g. `/{command} prompt: hello`."
    else:
        says = f"Unknown command; this bot answers `/{command}`."
    return {"type": CHANNEL_MESSAGE, "data": {"content": says, "flags": EPHEMERAL}}


def slash_commands(command: str) -> list[dict[str, Any]]:
    """The application's global commands, as ``parley discord register`` sends them (a bulk overwrite: the
    list is all of the application's global commands)."""
    return [{"name": command, "type": 1, "description": "Ask the bot something",
             "options": [{"type": STRING_OPTION, "name": "prompt", "description": "What to ask",
                          "required": True},
                         {"type": ATTACHMENT_OPTION, "name": "file",
                          "description": "An image or a file to ask about", "required": False}]}]
