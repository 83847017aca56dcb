"""``parley discord-bot``: the gateway side of the Discord bridge (discord.py). A DM to the bot, or a message
that mentions it, becomes a turn of the channel's conversation like a slash command does; the relay answers
it with the bot token, as a reply to the message. Needs the privileged Message Content intent (without it
Discord sends guild messages with empty content)."""

from __future__ import annotations

import asyncio

import discord

from parley.worker.log import get_logger
from parley.worker.settings import Settings

from ...deps import Services, standalone_services
from .decide import turn_for_message
from .inbound import accept

log = get_logger(__name__)


def intents() -> discord.Intents:
    """Only what the bot reads: guilds (to know its channels), messages in guilds and DMs, their content."""
    wanted = discord.Intents.none()
    wanted.guilds = wanted.guild_messages = wanted.dm_messages = wanted.message_content = True
    return wanted


class Bot(discord.Client):
    def __init__(self, settings: Settings, services: Services) -> None:
        super().__init__(intents=intents())
        self.settings, self.services = settings, services

    async def on_ready(self) -> None:
        log.info("discord_bot_ready", user_id=str(self.user.id) if self.user else None)

    async def on_message(self, message: discord.Message) -> None:
        if self.user is None:
            return
        guild_id = message.guild.id if message.guild else getattr(message.channel, "guild_id", None)
        turn = turn_for_message(
            message_id=str(message.id), channel_id=str(message.channel.id),
            guild_id=str(guild_id) if guild_id else None, author_id=str(message.author.id),
            author_is_bot=message.author.bot, content=message.content,
            mentioned_ids=[str(user.id) for user in message.mentions], bot_user_id=str(self.user.id),
            application_id=self.settings.discord_application_id or str(self.application_id or ""),
            attachments=[{"url": a.url, "content_type": a.content_type, "filename": a.filename,
                          "size": a.size} for a in message.attachments])
        if turn is None:
            return
        refused = await accept(self.services, turn)
        if refused is not None:
            await message.reply(refused, mention_author=False)


async def point_at(settings: Settings) -> None:
    """With another REST base (``PARLEY_DISCORD_API_URL``: tests, egress proxies), point discord.py at it
    and at the gateway it names (``GET /gateway/bot``, as Discord documents); both are class attributes of
    discord.py, set in the bot's own process only."""
    import httpx
    import yarl

    if not settings.discord_api_url or settings.discord_bot_token is None:
        return
    base = settings.discord_api_url.rstrip("/")
    discord.http.Route.BASE = base
    headers = {"authorization": f"Bot {settings.discord_bot_token.get_secret_value()}"}
    async with httpx.AsyncClient(timeout=15.0, follow_redirects=False) as http:
        response = await http.get(f"{base}/gateway/bot", headers=headers)
        response.raise_for_status()
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(response.json()["url"])


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the bot until ``stop`` is set (or SIGTERM/SIGINT when none is given)."""
    assert settings.discord_bot_token is not None
    await point_at(settings)
    if stop is None:
        import signal

        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with standalone_services(settings) as built:
        bot = Bot(settings, built)
        running = asyncio.create_task(bot.start(settings.discord_bot_token.get_secret_value()))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await bot.close()
            stopping.cancel()
            await asyncio.gather(running, stopping, return_exceptions=True)
        if not running.cancelled() and (exc := running.exception()) is not None:
            raise exc  # login refused, gateway gone: the process says so and exits
