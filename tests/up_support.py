"""Run ``parley up`` as a child of a test, whatever the signal disposition of the test run (a background job
inherits SIGINT ignored), and always leave nothing behind: every process it started is found through /proc
and killed at the end, whether the test passed or not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import wait_until

from parley.worker.local.background import http_ok

DROPPED_ENV = ("PARLEY_REDIS_URL", "OPENAI_API_KEY", "PARLEY_OPENAI_API_KEY", "PARLEY_OPENAI_BASE_URL",
               "PARLEY_API_KEYS", "PARLEY_URL", "PARLEY_PORT", "PARLEY_DATA_DIR", "PARLEY_FLOWER_PORT")
READY_TIMEOUT_S = 90.0
OURS = ("parley", "valkey-server", "redis-server", "celery")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without parley or OpenAI settings, the worker's metrics port off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    return {**env, "PARLEY_WORKER_METRICS_PORT": "0", **extra}


def descendants(pid: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _sigint(disposition: signal.Handlers) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGINT, disposition)

    return preexec


class Up:
    """One ``parley up`` child; its stderr goes to a file (a pipe nobody reads would fill and block it)."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str], sigint_ignored: bool = False) -> None:
        self.stderr_path = cwd / f"up-{time.monotonic_ns()}.stderr"
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "parley", "up", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                preexec_fn=_sigint(signal.SIG_IGN if sigint_ignored else signal.SIG_DFL))
        self.seen: set[int] = set()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def track(self) -> set[int]:
        if self.process.poll() is None:
            self.seen |= descendants(self.process.pid)
        return self.seen

    def wait_ready(self, api_url: str) -> None:
        """Until it has said "parley is up" (after up.json is written) and the API is ready."""
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"parley up exited ({self.process.returncode}):\n{self.stderr}")
            return "parley is up:" in self.stderr and http_ok(f"{api_url}/readyz")

        wait_until(ready, timeout_s=READY_TIMEOUT_S, interval_s=0.2, message="parley up to be ready")
        self.track()

    def wait_exit(self, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            self.track()
            time.sleep(0.2)
        return self.process.wait(timeout=1)

    def interrupt(self, timeout_s: float = 60.0, *, sig: signal.Signals = signal.SIGINT) -> int:
        """Ctrl-C as a terminal sends it: ``sig`` to the whole foreground process group ``parley up`` leads."""
        self.track()
        os.killpg(self.process.pid, sig)
        return self.wait_exit(timeout_s)

    def leftovers(self) -> list[str]:
        """The processes it started that still run, a moment after it exited."""
        time.sleep(0.5)
        return [f"{pid} {cmdline(pid)}" for pid in sorted(self.seen) if alive(pid)]

    def kill_all(self) -> None:
        self.track()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.seen:
            # Only what is still ours: a pid freed meanwhile may belong to someone else now.
            if alive(pid) and any(name in cmdline(pid) for name in OURS):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
