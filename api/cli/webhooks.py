"""``parley webhooks ...``: run the dispatcher, make a signing secret, and handle dead-lettered deliveries.

    parley webhooks run [--name NAME]
    parley webhooks new-secret
    parley webhooks dead-letters list | show ID | replay ID | drop ID

Kept apart from api/cli.py, which only calls :func:`add_webhook_commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from parley.worker.settings import Settings


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_webhook_commands(sub: Any) -> None:
    """Add ``webhooks`` and its subcommands to the ``parley`` parser's subparsers."""
    webhooks = sub.add_parser("webhooks", help="deliver terminal events to webhooks (signed, retried)")
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True)
    run = actions.add_parser("run", help="run a webhook dispatcher (as many as you like, anywhere)")
    run.add_argument("--name", help="consumer name in the group (default: host-pid)")
    run.set_defaults(func=cmd_run)
    secret = actions.add_parser("new-secret", help="print a new PARLEY_WEBHOOK_SECRET (whsec_...)")
    secret.set_defaults(func=cmd_new_secret)
    dead = actions.add_parser("dead-letters", help="list, show, replay or drop deliveries past their retries")
    dead.add_argument("action", choices=("list", "show", "replay", "drop"))
    dead.add_argument("delivery_id", nargs="?", help="the event id (webhook-id) of the delivery")
    dead.set_defaults(func=cmd_dead_letters)


def cmd_run(args: argparse.Namespace) -> int:
    from parley.worker.log import configure_logging
    from parley.worker.webhooks.service import serve

    settings = Settings()
    if settings.webhook_secret is None:
        _print("refusing to start the webhook dispatcher without PARLEY_WEBHOOK_SECRET: receivers could not "
               "verify what it sends. Make one with `parley webhooks new-secret`.")
        return 2
    configure_logging(settings)
    try:
        asyncio.run(serve(settings, name=args.name))
    except ValueError as exc:  # a malformed secret, found before anything is sent
        _print(f"cannot start the webhook dispatcher: {exc}")
        return 2
    return 0


def cmd_new_secret(args: argparse.Namespace) -> int:
    from parley.worker.webhooks.signing import generate_secret

    print(generate_secret())
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    return asyncio.run(_dead_letters(args.action, args.delivery_id))


async def _dead_letters(action: str, delivery_id: str | None) -> int:
    from parley.worker.store.connections import async_client
    from parley.worker.store.keys import Keys
    from parley.worker.webhooks.store import WebhookStore

    settings = Settings()
    client = async_client(settings)
    store = WebhookStore(client, Keys(settings.key_prefix))
    try:
        if action == "list":
            for record, at in await store.dead_letters(limit=10_000):
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
                print(f"{record.id}  {record.conversation_id}  {when}  {record.failures} failures  "
                      f"{record.last_error}")
            return 0
        letter = await store.dead_letter_of(delivery_id or "")
        if letter is None:
            _print(f"no dead-lettered webhook delivery {delivery_id!r}")
            return 1
        if action == "show":
            shown = {**asdict(letter), "payload": json.loads(letter.payload)}
            print(json.dumps(shown, indent=2))
        elif action == "replay":
            await store.replay(letter)
            _print(f"replaying {letter.id}: due now, with a fresh retry budget")
        else:
            await store.drop(letter)
            _print(f"dropped {letter.id}")
        return 0
    finally:
        await client.aclose()
