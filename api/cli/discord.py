"""``parley discord-relay`` (post the Discord bridge's replies), ``parley discord-bot`` (the gateway bot)
and ``parley discord register`` (its slash command). Kept apart from api/cli/__init__.py, which only calls
:func:`add_discord_commands`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from parley.worker.settings import Settings

from . import discovery


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_discord_commands(sub: Any) -> None:
    relay = sub.add_parser("discord-relay", help="post the Discord bridge's replies (as many as you like)")
    relay.set_defaults(func=cmd_relay)
    bot = sub.add_parser("discord-bot", help="answer DMs and @mentions on Discord (one per bot token)")
    bot.set_defaults(func=cmd_bot)
    discord = sub.add_parser("discord", help="the Discord bridge's setup")
    actions = discord.add_subparsers(dest="discord_command", required=True)
    register = actions.add_parser("register", help="register the slash command (PARLEY_DISCORD_COMMAND)")
    register.set_defaults(func=cmd_register)


def cmd_relay(args: argparse.Namespace) -> int:
    from parley.api.bridges.discord.relay import serve
    from parley.worker.log import configure_logging

    settings = discovery.with_redis(Settings())  # beside parley up: its Redis
    if not settings.discord_application_id:
        _print("PARLEY_DISCORD_APPLICATION_ID is not set: the relay cannot address the replies.")
        return 2
    configure_logging(settings)
    asyncio.run(serve(settings))
    return 0


def cmd_bot(args: argparse.Namespace) -> int:
    from parley.api.bridges.discord.bot import serve
    from parley.worker.log import configure_logging

    settings = discovery.beside_up(Settings())  # beside parley up: its Redis, and its emulator
    if settings.discord_bot_token is None or not settings.discord_application_id:
        _print("set PARLEY_DISCORD_BOT_TOKEN and PARLEY_DISCORD_APPLICATION_ID to run the gateway bot")
        return 2
    configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except Exception as exc:  # login refused, privileged intent not enabled: one line, not a traceback
        _print(f"the Discord bot stopped: {type(exc).__name__}: {exc}")
        return 1
    return 0


async def register(settings: Settings) -> list[dict[str, Any]]:
    """Overwrite the application's global commands with the bridge's one; returns what Discord stored."""
    import httpx

    from parley.api.bridges.discord.decide import slash_commands
    from parley.api.bridges.discord.rest import DiscordRest

    assert settings.discord_bot_token is not None and settings.discord_application_id
    async with httpx.AsyncClient(timeout=15.0, follow_redirects=False) as http:
        rest = DiscordRest(http, api_url=settings.discord_api_url,
                           bot_token=settings.discord_bot_token.get_secret_value())
        stored = await rest.overwrite_commands(settings.discord_application_id,
                                               slash_commands(settings.discord_command))
    return list(stored)


def cmd_register(args: argparse.Namespace) -> int:
    from parley.api.bridges.discord.rest import DiscordError

    settings = discovery.beside_up(Settings())  # beside parley up: its Redis, and its emulator
    if settings.discord_bot_token is None or not settings.discord_application_id:
        _print("set PARLEY_DISCORD_BOT_TOKEN and PARLEY_DISCORD_APPLICATION_ID to register the command")
        return 2
    try:
        stored = asyncio.run(register(settings))
    except DiscordError as exc:
        _print(f"Discord refused the command: {exc}")
        return 1
    _print(f"registered /{', /'.join(str(c.get('name')) for c in stored)} for application "
           f"{settings.discord_application_id} (global commands can take a while to show in clients)")
    return 0
