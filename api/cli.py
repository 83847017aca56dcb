"""The ``parley`` command: ``up`` (everything, embedded defaults), ``api``, ``worker``, ``beat``, ``emulator``,
``send``, ``chat``, ``dead-letter``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import httpx

from parley.worker.settings import Settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings()
    host = args.host or settings.host
    port = args.port or settings.port
    if not settings.api_keys and host not in LOOPBACK:
        _print(f"refusing to bind {host}: no PARLEY_API_KEYS are set, so the API would be open to anyone. "
               "Set PARLEY_API_KEYS, or bind to 127.0.0.1.")
        return 2
    uvicorn.run("parley.api.main:create_app", factory=True, host=host, port=port, log_level="warning",
                access_log=False, workers=args.workers, timeout_keep_alive=30)
    return 0


def _celery(*argv: str) -> int:
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", "-A", "parley.worker.celery_app", *argv]
    celery_main()
    return 0


def run_worker(extra: Sequence[str]) -> int:
    settings = Settings()
    return _celery("worker", "-P", settings.worker_pool, "-c", str(settings.worker_concurrency), "-Q", "parley",
                   "-l", settings.log_level, "--without-mingle", "--without-gossip", *extra)


def run_beat(extra: Sequence[str]) -> int:
    schedule = [] if "-s" in extra else ["-s", os.path.join(tempfile.gettempdir(), "parley-beat-schedule")]
    return _celery("beat", "-l", Settings().log_level, *schedule, *extra)


PASSTHROUGH = {"worker": run_worker, "beat": run_beat}
"""Subcommands whose further arguments all go to celery."""


def cmd_flower(args: argparse.Namespace) -> int:
    settings = Settings()
    env = dict(os.environ)
    if settings.flower_basic_auth is not None:
        # Through the environment, so the password is not in the process list.
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    elif settings.flower_allow_unauthenticated:
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    else:
        _print("refusing to start Flower without PARLEY_FLOWER_BASIC_AUTH (user:password): its UI and API can "
               "revoke tasks and resize pools. Set PARLEY_FLOWER_ALLOW_UNAUTHENTICATED=true to run it open.")
        return 2
    argv = [sys.executable, "-m", "celery", "-A", "parley.worker.celery_app", "flower",
            f"--address={settings.flower_address}", f"--port={settings.flower_port}",
            # Flower keeps every task in memory; bound it (research.md §3.1).
            "--max_tasks=10000", "--persistent=False"]
    os.execvpe(argv[0], argv, env)
    return 0  # pragma: no cover - execvpe does not return


def cmd_emulator(args: argparse.Namespace) -> int:
    from parley.worker.local.emulator.faults import EmulatorConfig
    from parley.worker.local.emulator.server import serve_forever

    config = EmulatorConfig(seed=args.seed, latency_ms=(args.latency_ms, args.latency_ms),
                            delta_interval_ms=args.delta_interval_ms)
    _print(f"OpenAI emulator on http://{args.host}:{args.port}/v1 (debug routes under /_emulator)")
    serve_forever(config, host=args.host, port=args.port)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from .stack import LocalStack

    with LocalStack(Settings(), api_port=args.port, flower=args.flower) as stack:
        _print(stack.banner())
        stop = {"now": False}

        def on_signal(signum: int, _: Any) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, on_signal)
        try:
            while not stop["now"]:
                failed = stack.failed()
                if failed:
                    _print(f"{failed} exited; stopping everything")
                    return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        _print("stopping...")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from .client import ParleyAPIError, ParleyClient

    try:
        with ParleyClient(args.url, api_key=args.api_key) as client:
            conversation = client.create_conversation(key=args.conversation)
            turn = client.wait_for_reply(client.send_turn(conversation.id, args.text).id, timeout_s=args.timeout)
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
    from .chat import chat
    from .client import ParleyClient

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
    from parley.worker.connections import sync_client
    from parley.worker.dead_letters import DeadLetters
    from parley.worker.keys import Keys
    from parley.worker.runtime import Wakeups

    settings = Settings()
    letters = DeadLetters(sync_client(settings), Keys(settings.key_prefix))
    if args.action == "list":
        for letter in letters.list():
            print(f"{letter.turn_id}  {letter.conversation_id}  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(letter.at))}")
        return 0
    letter = letters.find(args.turn_id or "")
    if letter is None:
        _print(f"no dead-lettered turn {args.turn_id!r}")
        return 1
    if args.action == "show":
        turn = letters.show(letter)
        print(json.dumps(turn.model_dump(mode="json") if turn else None, indent=2))
    elif args.action == "requeue":
        if letters.requeue(letter):
            Wakeups(create_celery(settings))(letter.conversation_id)
        _print(f"requeued {letter.turn_id}")
    else:
        letters.drop(letter)
        _print(f"dropped {letter.turn_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Redis (embedded), the emulator (without a key), API, worker, reaper")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--flower", action="store_true", help="also start Flower (with generated credentials)")
    up.set_defaults(func=cmd_up)
    api = sub.add_parser("api", help="serve the HTTP ingress")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int, default=1)
    api.set_defaults(func=cmd_api)
    for name in PASSTHROUGH:
        sub.add_parser(name, help=f"run a Celery {name} with parley's settings (further arguments go to celery)")
    emulator = sub.add_parser("emulator", help="serve the local OpenAI emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8100)
    emulator.add_argument("--seed", type=int, default=0)
    emulator.add_argument("--latency-ms", type=int, default=0)
    emulator.add_argument("--delta-interval-ms", type=int, default=0)
    emulator.set_defaults(func=cmd_emulator)
    flower = sub.add_parser("flower", help="run Flower on the broker, with basic auth from the settings")
    flower.set_defaults(func=cmd_flower)
    dead = sub.add_parser("dead-letter", help="list, show, requeue or drop dead-lettered turns")
    dead.add_argument("action", choices=("list", "show", "requeue", "drop"))
    dead.add_argument("turn_id", nargs="?")
    dead.set_defaults(func=cmd_dead_letter)
    from .cli_webhooks import add_webhook_commands  # parley webhooks ...: run, new-secret, dead-letters
    add_webhook_commands(sub)
    send = sub.add_parser("send", help="send one turn and print the reply")
    send.add_argument("text")
    send.add_argument("--timeout", type=float, default=60.0)
    send.set_defaults(func=cmd_send)
    chat = sub.add_parser("chat", help="chat in the terminal, replies shown as they are written")
    chat.set_defaults(func=cmd_chat)
    for client_command in (send, chat):
        client_command.add_argument("--conversation", default="cli:default",
                                    help="get-or-create key of the conversation")
        client_command.add_argument("--url", default=os.environ.get("PARLEY_URL", "http://127.0.0.1:8000"))
        client_command.add_argument("--api-key", default=os.environ.get("PARLEY_API_KEY"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        return PASSTHROUGH[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))

if __name__ == "__main__":
    sys.exit(main())
