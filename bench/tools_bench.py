"""Scenario (10) of issue 11: the worker CPU a server-tool round costs. Two batches on the same machine and
settings (zero-latency upstream, non-streamed): plain turns, then turns whose model calls one server tool
before it answers (two upstream requests, the tool run and its records). The extra CPU per tool round is the
difference per turn; target <= 1.5 ms, and the ratio of the two is reported too."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis
from harness import cpu_s, emulator, parley_workers
from scenarios import Size, _enqueue, make_conversations, settings_for

from parley.worker.celery_app import create_celery
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.store.keys import Keys

SUPPORT = Path(__file__).resolve().parents[1] / "tests" / "support"


def _cpu_per_turn(size: Size, text: str, tool_log: Path) -> tuple[float, float]:
    """Worker CPU ms per turn and turns/s for ``size.ordered_convs x size.ordered_turns`` turns of ``text``."""
    total = size.ordered_convs * size.ordered_turns
    with EmbeddedRedis() as server, emulator() as upstream:
        settings = settings_for(server.url, upstream, stream_upstream=False, tools=["e2e_tools"])
        convs = make_conversations(upstream, settings, size.ordered_convs)
        held: list[str] = []
        asyncio.run(_enqueue(settings, [(c, f"{text} {i}") for i in range(size.ordered_turns) for c in convs],
                             rate=None, held=held))
        client = redis.Redis.from_url(server.url)
        env = {"PYTHONPATH": str(SUPPORT), "E2E_TOOL_LOG": str(tool_log)}
        with parley_workers(settings, 1, concurrency=100, extra_env=env) as pids:
            celery = create_celery(settings)
            cpu0, began = sum(cpu_s(p) for p in pids), time.monotonic()
            with celery.producer_or_acquire() as producer:
                for conv in held:
                    celery.send_task("parley.drain", args=[conv], queue="parley", producer=producer)
            while client.xlen(Keys().replies) < total:
                if time.monotonic() - began > 300:
                    raise TimeoutError(f"{client.xlen(Keys().replies)} of {total} turns in 300 s")
                time.sleep(0.05)
            elapsed = time.monotonic() - began
            cpu = sum(cpu_s(p) for p in pids) - cpu0
        client.close()
    return cpu * 1000 / total, total / elapsed


def tools(size: Size, workdir: Path) -> dict[str, object]:
    plain_ms, plain_rate = _cpu_per_turn(size, "hello", workdir / "plain.jsonl")
    tool_ms, tool_rate = _cpu_per_turn(size, '[call add {"a": 3, "b": 4}]', workdir / "tools.jsonl")
    return {"turns": size.ordered_convs * size.ordered_turns, "plain_cpu_ms_per_turn": round(plain_ms, 2),
            "tool_cpu_ms_per_turn": round(tool_ms, 2), "extra_cpu_ms_per_round": round(tool_ms - plain_ms, 2),
            "cpu_ratio": round(tool_ms / plain_ms, 2), "plain_turns_per_s": round(plain_rate, 1),
            "tool_turns_per_s": round(tool_rate, 1)}
