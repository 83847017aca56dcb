"""Child processes that die with their parent (``parley up``, test fixtures)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import IO

from .redis_server import _die_with_parent


def spawn(args: Sequence[str], *, env: Mapping[str, str] | None = None, quiet: bool = False,
          log_path: str | None = None, pipe: bool = False) -> subprocess.Popen[bytes]:
    """Start ``args`` (``python`` means this interpreter) in its own session, so a Ctrl-C in the terminal
    reaches only the parent, which stops its children in order.

    :param pipe: its stdout and stderr, together, on ``process.stdout``.
    """
    argv = [sys.executable if args[0] == "python" else args[0], *args[1:]]
    # PDEATHSIG fires when the *thread* that forked exits, so it is only safe from the main thread.
    on_main = threading.current_thread() is threading.main_thread()
    out: int | IO[bytes] | None = subprocess.PIPE if pipe else None
    if log_path:
        out = open(log_path, "ab")  # noqa: SIM115
    elif quiet:
        out = subprocess.DEVNULL
    return subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT if out is not None else None,
                            preexec_fn=_die_with_parent if on_main else None,
                            start_new_session=True)


def stop(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_all(processes: Iterable[subprocess.Popen[bytes]], *, timeout_s: float = 15.0) -> None:
    """SIGTERM every process group at once, wait for all, SIGKILL those still there after ``timeout_s``."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stop(process, sig=signal.SIGKILL, timeout_s=5.0)
