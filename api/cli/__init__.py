"""The ``parley`` command: ``up`` (up.py), ``api``, ``worker`` and ``beat`` (workers.py),
``emulator``, ``flower``, ``send``, ``chat``, ``dead-letter``, ``slack-relay`` and ``slack-socket``
(bridges.py), ``discord-relay``, ``discord-bot``, ``discord register`` (discord.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from parley import __version__
from parley.worker.log import redact_url, upstream_description
from parley.worker.settings import Settings

from . import discovery
from .flower import cmd_flower
from .up import add_arguments as add_up_arguments
from .up import cmd_up
from .workers import PASSTHROUGH

DESCRIPTION = ("parley runs ordered, crash-safe chat-bot turns on the OpenAI Responses and Conversations "
               "APIs. "
               "`parley up` runs everything on this machine; the other commands run one part each. "
               "Settings come from PARLEY_* environment variables (see the README).")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings()
    host = args.host or settings.host
    port = args.port or settings.port
    if not settings.api_keys and not settings.api_keys_file and host not in LOOPBACK:
        _print(f"refusing to bind {host}: no PARLEY_API_KEYS (or PARLEY_API_KEYS_FILE) are set, so the API "
               "would be open to anyone. Set them, or bind to 127.0.0.1.")
        return 2
    broker = f", broker {redact_url(settings.broker_url.get_secret_value())}" if settings.broker_url else ""
    _print(f"parley api on http://{host}:{port}, Redis {redact_url(settings.redis_url, '(not set)')}"
           f"{broker}, upstream {upstream_description(settings)}")
    from ..http_protocol import HeaderDeadlineProtocol

    uvicorn.run("parley.api.main:create_app", factory=True, host=host, port=port, log_level="warning",
                access_log=False, workers=args.workers, timeout_keep_alive=30, http=HeaderDeadlineProtocol,
                limit_concurrency=settings.max_connections)
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    from parley.worker.local.emulator.faults import EmulatorConfig
    from parley.worker.local.emulator.server import serve_forever

    config = EmulatorConfig(seed=args.seed, latency_ms=(args.latency_ms, args.latency_ms),
                            delta_interval_ms=args.delta_interval_ms)
    _print(f"OpenAI emulator on http://{args.host}:{args.port}/v1 (debug routes under /_emulator)")
    serve_forever(config, host=args.host, port=args.port, state_file=args.state_file)
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from ..client import ParleyAPIError, ParleyClient

    args.url = args.url or discovery.api_url(Settings())
    try:
        with ParleyClient(args.url, api_key=args.api_key) as client:
            conversation = client.create_conversation(key=args.conversation)
            turn = client.wait_for_reply(client.send_turn(conversation.id, args.text).id,
                                         timeout_s=args.timeout)
    except httpx.HTTPError as exc:
        _print(f"cannot reach parley at {args.url}: {exc} (is `parley up` running?)")
        return 1
    except ParleyAPIError as exc:
        _print(f"error: {exc}")
        return 1
    if turn.status.value != "completed":
        _print(f"turn {turn.status.value}: {turn.error.message if turn.error else 'no reply in time'}")
        return 1
    print(turn.output_text)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from ..client import ParleyClient
    from .chat import chat, enable_line_editing

    args.url = args.url or discovery.api_url(Settings())
    enable_line_editing(sys.stdin)
    try:
        with ParleyClient(args.url, api_key=args.api_key) as client:
            return chat(client, key=args.conversation)
    except httpx.HTTPError as exc:
        _print(f"cannot reach parley at {args.url}: {exc} (is `parley up` running?)")
        return 1
    except KeyboardInterrupt:
        return 0


def cmd_dead_letter(args: argparse.Namespace) -> int:
    import json

    from parley.worker.celery_app import create_celery
    from parley.worker.run.runtime import Wakeups
    from parley.worker.store.connections import sync_client
    from parley.worker.store.dead_letters import DeadLetters
    from parley.worker.store.keys import Keys

    settings = discovery.with_redis(Settings())
    if not settings.redis_url:
        _print(f"PARLEY_REDIS_URL is not set and no parley up is running with data in {settings.data_dir}")
        return 1
    letters = DeadLetters(sync_client(settings), Keys(settings.key_prefix),
                          retention_s=settings.retention_s)
    if args.action == "list":
        for entry in letters.list():
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.at))
            print(f"{entry.turn_id}  {entry.conversation_id}  {at}")
        return 0
    letter = letters.find(args.turn_id or "")
    if letter is None:
        _print(f"no dead-lettered turn {args.turn_id!r}")
        return 1
    if args.action == "show":
        turn = letters.show(letter)
        print(json.dumps(turn.model_dump(mode="json") if turn else None, indent=2))
    elif args.action == "requeue":
        try:
            rewake = letters.requeue(letter)
        except ValueError as exc:
            _print(str(exc))
            return 1
        if rewake:
            Wakeups(create_celery(settings))(letter.conversation_id)
        _print(f"requeued {letter.turn_id}")
    else:
        letters.drop(letter)
        _print(f"dropped {letter.turn_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    settings = Settings()
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="parley", description=DESCRIPTION, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"parley {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)

    up = command("up", "start Redis (embedded), the emulator (unless an OpenAI key is set), API, worker, "
                 "reaper")
    add_up_arguments(up, settings)
    up.set_defaults(func=cmd_up)
    api = command("api", "serve the HTTP ingress")
    api.add_argument("--host", default=settings.host, help="(PARLEY_HOST)")
    api.add_argument("--port", type=int, default=settings.port, help="(PARLEY_PORT)")
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    api.set_defaults(func=cmd_api)
    for name in PASSTHROUGH:
        command(name, f"run a Celery {name} with parley's settings (further arguments go to celery; "
                f"`parley {name} --help` for more)")
    emulator = command("emulator", "serve the local OpenAI emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8100)
    emulator.add_argument("--seed", type=int, default=0, help="seed of the emulator's faults and replies")
    emulator.add_argument("--latency-ms", type=int, default=0, help="delay before each reply")
    emulator.add_argument("--delta-interval-ms", type=int, default=0, help="delay between streamed deltas")
    emulator.add_argument("--state-file", type=Path,
                          help="keep the conversations in this file across restarts")
    emulator.set_defaults(func=cmd_emulator)
    flower = command("flower", "run Flower on the broker, with basic auth from the settings")
    flower.set_defaults(func=cmd_flower)
    dead = command("dead-letter", "list, show, requeue or drop dead-lettered turns")
    dead.add_argument("action", choices=("list", "show", "requeue", "drop"))
    dead.add_argument("turn_id", nargs="?", help="the turn, for show, requeue and drop")
    dead.set_defaults(func=cmd_dead_letter)
    from .webhooks import add_webhook_commands  # parley webhooks ...: run, new-secret, dead-letters
    add_webhook_commands(sub)
    from .keys import add_key_commands  # parley keys ...: new, check
    add_key_commands(sub)
    from .bridges import add_bridge_commands  # parley slack-relay, slack-socket
    add_bridge_commands(sub)
    from .discord import add_discord_commands  # parley discord-relay, discord-bot, discord register
    add_discord_commands(sub)
    send = command("send", "send one turn and print the reply")
    send.add_argument("text")
    send.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the reply")
    send.set_defaults(func=cmd_send)
    chat = command("chat", "chat in the terminal, replies shown as they are written")
    chat.set_defaults(func=cmd_chat)
    for client_command in (send, chat):
        client_command.add_argument("--conversation", default="cli:default",
                                    help="get-or-create key of the conversation")
        client_command.add_argument("--url", help="parley's API (default: PARLEY_URL, else the parley up "
                                    f"running beside, else http://127.0.0.1:{settings.port})")
        client_command.add_argument("--api-key", default=os.environ.get("PARLEY_API_KEY"),
                                    help="bearer key (PARLEY_API_KEY)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        return PASSTHROUGH[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
