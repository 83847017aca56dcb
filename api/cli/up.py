"""``parley up``: start the local stack, watch it, stop it on Ctrl-C or SIGTERM or when any part dies."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from parley.worker.settings import Settings

from .stack import LocalStack, StackError

WATCH_INTERVAL_S = 0.5


def _print(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:  # the terminal is gone (SIGHUP): stopping matters more than saying so
        pass


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) set ``stop``, whatever the parent left: a background
    job inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler, so Ctrl-C would do
    nothing."""

    def on_signal(signum: int, _: FrameType | None) -> None:
        if stop.is_set():
            _print("still stopping...")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def add_arguments(up: argparse.ArgumentParser, settings: Settings) -> None:
    up.add_argument("--port", type=int, default=settings.port, help="port of the API (PARLEY_PORT)")
    up.add_argument("--data-dir", type=Path, default=Path(settings.data_dir),
                    help="where Redis's data, the logs and up.json are kept (PARLEY_DATA_DIR)")
    up.add_argument("--emulator", action="store_true",
                    help="use the local OpenAI emulator even when OPENAI_API_KEY is set")
    up.add_argument("--flower", action="store_true",
                    help="also start Flower (with generated credentials, on PARLEY_FLOWER_PORT)")


def cmd_up(args: argparse.Namespace) -> int:
    stop = threading.Event()
    install_stop_handlers(stop)
    stack = LocalStack(Settings(), data_dir=args.data_dir, api_port=args.port, flower=args.flower,
                       force_emulator=args.emulator, stop=stop)
    try:
        stack.check()
    except StackError as exc:
        _print(f"parley up: {exc}")
        return 1
    _print(f"upstream: {stack.upstream.description}, because {stack.upstream.reason}")
    code = 0
    try:
        stack.start()
        if not stop.is_set():
            _print(stack.banner())
        while not stop.is_set():
            failure = stack.failure()
            if failure:
                _print(failure)
                code = 1
                break
            stop.wait(WATCH_INTERVAL_S)
    except RuntimeError as exc:  # StackError, or the embedded Redis that did not start
        _print(f"parley up: {exc}")
        code = 1
    finally:
        _print("stopping...")
        stack.close()
        _print("stopped")
    return code
