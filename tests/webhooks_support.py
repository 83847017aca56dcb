"""Processes for the webhook tests and benchmark: the receiver (tests/webhook_receiver.py) and dispatchers
(``parley webhooks run``), each in a process of its own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import settings_env

from parley.worker.local.background import wait_http
from parley.worker.local.processes import spawn, stop
from parley.worker.settings import Settings

RECEIVER = Path(__file__).resolve().parent / "webhook_receiver.py"


def start_receiver(port: int, out: Path, secret: str, *, rejected: Path | None = None,
                   fail_until: float = 0.0, hang: bool = False) -> subprocess.Popen[bytes]:
    args = ["python", str(RECEIVER), "--port", str(port), "--out", str(out), "--fail-until", str(fail_until)]
    if rejected is not None:
        args += ["--rejected", str(rejected)]
    if hang:
        args.append("--hang")
    proc = spawn(args, env={"WEBHOOK_SECRET": secret}, quiet=True)
    wait_http(f"http://127.0.0.1:{port}/health", timeout_s=20)
    return proc


@contextmanager
def receiver(port: int, out: Path, secret: str, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_receiver(port, out, secret, **kwargs)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        stop(proc)


def start_dispatcher(settings: Settings, name: str, *,
                     log_path: str | None = None) -> subprocess.Popen[bytes]:
    return spawn(["python", "-m", "parley", "webhooks", "run", "--name", name], env=settings_env(settings),
                 log_path=log_path, quiet=log_path is None)


@contextmanager
def dispatcher(settings: Settings, name: str = "d0", **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_dispatcher(settings, name, **kwargs)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        stop(proc)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parley", "webhooks", *args], capture_output=True, text=True,
                          timeout=60, env={**settings_env(settings), "PATH": "/usr/bin:/bin"})


def ids(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []
