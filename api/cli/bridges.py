"""``parley slack-relay``: the Slack bridge's reply relay (as many as you like; they share the turns).
``parley slack-socket``: its inbound side over Socket Mode, to try it without a public URL."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from parley.worker.settings import Settings

from . import discovery


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_bridge_commands(sub: Any) -> None:
    relay = sub.add_parser("slack-relay", help="post the Slack bridge's replies into their threads",
                           description="post the Slack bridge's replies into their threads")
    relay.add_argument("--claim-idle-s", type=float, default=60.0,
                       help="take over a turn another relay left unacknowledged this long (it died)")
    relay.set_defaults(func=cmd_slack_relay)
    about = "take Slack's events over Socket Mode instead of POST /slack/events (development: no public URL)"
    socket = sub.add_parser("slack-socket", help=about, description=about)
    socket.set_defaults(func=cmd_slack_socket)


def cmd_slack_relay(args: argparse.Namespace) -> int:
    from parley.worker.log import configure_logging

    settings = discovery.with_redis(Settings())  # beside parley up: its Redis
    if settings.slack_bot_token is None or not settings.redis_url:
        _print("the Slack relay needs PARLEY_SLACK_BOT_TOKEN and PARLEY_REDIS_URL")
        return 2
    from parley.api.bridges.slack.relay import serve

    configure_logging(settings)
    try:
        asyncio.run(serve(settings, claim_idle_ms=int(args.claim_idle_s * 1000)))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_slack_socket(args: argparse.Namespace) -> int:
    from parley.worker.log import configure_logging

    settings = discovery.beside_up(Settings())  # beside parley up: its Redis, and its emulator
    missing = [name for name, value in (("PARLEY_SLACK_APP_TOKEN", settings.slack_app_token),
                                        ("PARLEY_SLACK_BOT_TOKEN", settings.slack_bot_token),
                                        ("PARLEY_REDIS_URL (or a parley up beside)", settings.redis_url))
               if not value]
    if missing:
        _print(f"Slack's Socket Mode needs {', '.join(missing)} (the app-level token: connections:write)")
        return 2
    from slack_sdk.errors import SlackApiError

    from parley.api.bridges.slack.socket import serve

    configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    except SlackApiError as exc:  # a refused token: one line, not a traceback
        _print(f"Slack refused the Socket Mode connection: {exc.response.get('error')}")
        return 1
    return 0
