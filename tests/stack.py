"""Real processes for end-to-end tests: the API on uvicorn and Celery workers as subprocesses."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import settings_env

from parley.worker.celery_app import create_celery
from parley.worker.local.processes import spawn, stop, stop_all
from parley.worker.settings import Settings


def start_worker(settings: Settings, name: str, *, concurrency: int | None = None, pool: str = "threads",
                 extra_env: dict[str, str] | None = None, log_path: str | None = None) -> subprocess.Popen[bytes]:
    env = {**settings_env(settings), **(extra_env or {})}
    return spawn(["python", "-m", "celery", "-A", "parley.worker.celery_app", "worker", "-P", pool,
                  "-c", str(concurrency or settings.worker_concurrency), "-n", f"{name}@%h", "-Q", "parley",
                  "-l", "WARNING", "--without-mingle", "--without-gossip", "--without-heartbeat"], env=env,
                 log_path=log_path)


def wait_ready(settings: Settings, names: list[str], timeout_s: float = 30.0) -> None:
    # parley's own app, not a bare Celery(): kombu's connection pools share one limit per process, set by
    # each app that opens one, and a bare app's default (10) shrank the limit of the API's app in this
    # process (its concurrency + 20) while its connections were in use, racing its first publish: kombu
    # raised "Can't shrink pool when in use". With the same settings both apps ask for the same limit.
    app = create_celery(settings)
    deadline = time.monotonic() + timeout_s
    wanted = set(names)
    try:
        while time.monotonic() < deadline:
            # limit: return as soon as every wanted worker answered, not after the whole timeout; a short
            # timeout, since a ping sent before the worker listens waits all of it for nothing.
            replies = app.control.ping(timeout=0.2, limit=len(wanted)) or []
            seen = {name.split("@")[0] for reply in replies for name in reply}
            if wanted <= seen:
                return
        raise AssertionError(f"workers {sorted(wanted)} not ready after {timeout_s}s")
    finally:
        app.close()


@contextmanager
def workers(settings: Settings, count: int, **kwargs: object) -> Iterator[list[subprocess.Popen[bytes]]]:
    names = [f"w{i}" for i in range(count)]
    procs = [start_worker(settings, name, **kwargs) for name in names]  # type: ignore[arg-type]
    try:
        wait_ready(settings, names)
        yield procs
    finally:
        stop_all(procs)  # at once: each takes its warm shutdown, a second or so


@contextmanager
def start_beat(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    import tempfile

    schedule = tempfile.mktemp(prefix="parley-beat-")
    proc = spawn(["python", "-m", "celery", "-A", "parley.worker.celery_app", "beat", "-l", "WARNING",
                  "-s", schedule], env=settings_env(settings))
    try:
        yield proc
    finally:
        stop(proc)
