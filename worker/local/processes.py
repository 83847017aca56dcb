"""Child processes that die with their parent (``parley up``, test fixtures)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

from .redis_server import _die_with_parent


def spawn(args: Sequence[str], *, env: Mapping[str, str] | None = None, quiet: bool = False,
          log_path: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` (``python`` means this interpreter) in its own process group."""
    argv = [sys.executable if args[0] == "python" else args[0], *args[1:]]
    # PDEATHSIG fires when the *thread* that forked exits, so it is only safe from the main thread.
    on_main = threading.current_thread() is threading.main_thread()
    out = open(log_path, "ab") if log_path else (subprocess.DEVNULL if quiet else None)  # noqa: SIM115
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
