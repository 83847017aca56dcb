"""Processes and measurements shared by the benchmark scenarios: everything runs on loopback, in processes of
its own, and is stopped by the scenario that started it."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from conftest import settings_env  # noqa: E402
from stack import start_worker, wait_ready  # noqa: E402

from parley.worker.local.background import free_port, wait_http  # noqa: E402
from parley.worker.local.processes import spawn, stop  # noqa: E402
from parley.worker.settings import Settings  # noqa: E402


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def emulator(latency_ms: int = 0) -> Iterator[str]:
    """The emulator in a process of its own (so its CPU is not the measured process's); yields its base URL."""
    with emulator_process(latency_ms) as (url, _):
        yield url


@contextmanager
def emulator_process(latency_ms: int = 0) -> Iterator[tuple[str, int]]:
    """As ``emulator``, yielding its process id too (to read the CPU it used)."""
    port = free_port()
    proc = spawn(["python", "-m", "parley", "emulator", "--port", str(port), "--latency-ms", str(latency_ms)],
                 quiet=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_emulator/state")
        yield f"http://127.0.0.1:{port}/v1", proc.pid
    finally:
        stop(proc)


@contextmanager
def api(settings: Settings, *, log_path: str | None = None) -> Iterator[tuple[str, int]]:
    """``parley api`` in a process of its own; with ``log_path``, its output (unbuffered) goes there."""
    port = free_port()
    proc = spawn(["python", "-m", "parley", "api", "--port", str(port)],
                 env={**settings_env(settings), "PYTHONUNBUFFERED": "1"}, quiet=True, log_path=log_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        stop(proc)


@contextmanager
def bare_api(redis_url: str) -> Iterator[str]:
    port = free_port()
    proc = spawn(["python", "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning",
                  "--no-access-log", "--app-dir", str(ROOT / "bench")],
                 env={"BENCH_REDIS_URL": redis_url}, quiet=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def parley_workers(settings: Settings, count: int, *, concurrency: int,
                   extra_env: dict[str, str] | None = None) -> Iterator[list[int]]:
    names = [f"bench{i}" for i in range(count)]
    env = {"PARLEY_LOG_LEVEL": "WARNING", **(extra_env or {})}
    procs = [start_worker(settings, name, concurrency=concurrency, extra_env=env) for name in names]
    try:
        wait_ready(settings, names, timeout_s=60)
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            stop(proc)


@contextmanager
def naive_workers(redis_url: str, upstream: str, *, pool: str, concurrency: int, count: int = 1,
                  stream: bool = False) -> Iterator[list[int]]:
    """The naive baseline: one Celery task per turn, no ordering (bench/naive_app.py)."""
    env = {"BENCH_REDIS_URL": redis_url, "BENCH_UPSTREAM": upstream, "BENCH_STREAM": "1" if stream else "0",
           "PYTHONPATH": str(ROOT / "bench")}
    procs = [spawn(["python", "-m", "celery", "-A", "naive_app", "worker", "-P", pool, "-c", str(concurrency),
                    "-n", f"naive{i}@%h", "-Q", "naive", "-l", "WARNING", "--without-mingle", "--without-gossip",
                    "--without-heartbeat"], env=env, quiet=True) for i in range(count)]
    try:
        from celery import Celery

        app = Celery(broker=redis_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5) or []
            if len(replies) >= count:
                break
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            stop(proc)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def repeat(times: int, run: Callable[[], dict[str, float]]) -> dict[str, object]:
    """Run ``times`` and report each figure's median with its spread (min, max)."""
    runs = [run() for _ in range(times)]
    out: dict[str, object] = {}
    for key in runs[0]:
        values = [float(r[key]) for r in runs]
        out[key] = round(statistics.median(values), 3)
        out[f"{key}_spread"] = [round(min(values), 3), round(max(values), 3)]
    return out

