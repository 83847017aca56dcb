"""``parley slack-relay``: the Slack bridge's reply relay (as many as you like; they share the turns)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from parley.worker.settings import Settings


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_bridge_commands(sub: Any) -> None:
    relay = sub.add_parser("slack-relay", help="post the Slack bridge's replies into their threads",
                           description="post the Slack bridge's replies into their threads")
    relay.add_argument("--claim-idle-s", type=float, default=60.0,
                       help="take over a turn another relay left unacknowledged this long (it died)")
    relay.set_defaults(func=cmd_slack_relay)


def cmd_slack_relay(args: argparse.Namespace) -> int:
    from parley.worker.log import configure_logging

    settings = Settings()
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
