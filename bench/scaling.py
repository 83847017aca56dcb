"""Scenario (9) of issue 14, many cores: ordered throughput with one worker process, then with two, on this
machine (zero-latency upstream, non-streamed), and the ratio between them (target >= 1.6).

The mailboxes are filled first with the wake-ups held back, then all wake-ups go at once and the clock runs
until the replies stream holds every turn (counted with XLEN: no subscriber spending CPU in this process).

The emulator and Redis run on the same two cores, so they bound what a second worker can add: with ``w`` ms
of worker CPU and ``o`` ms of emulator + Redis CPU per turn (both read from /proc in the two-process run), two
cores finish at most ``2000 / (w + o)`` turns/s, and the ratio can be at most that over the one-process rate
(``ceiling``). A ratio near its ceiling means the workers scale as far as this machine lets them.
"""

from __future__ import annotations

import asyncio
import time

import redis
from harness import cpu_s, emulator_process, parley_workers
from scenarios import Size, _enqueue, make_conversations, settings_for

from parley.worker.celery_app import create_celery
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.store.keys import Keys


def _rate(size: Size, processes: int) -> dict[str, float]:
    total = size.ordered_convs * size.ordered_turns
    with EmbeddedRedis() as server, emulator_process() as (upstream, emulator_pid):
        settings = settings_for(server.url, upstream, stream_upstream=False)
        convs = make_conversations(upstream, settings, size.ordered_convs)
        jobs = [(c, f"t{i}") for i in range(size.ordered_turns) for c in convs]
        held: list[str] = []
        asyncio.run(_enqueue(settings, jobs, rate=None, held=held))
        client = redis.Redis.from_url(server.url)
        with parley_workers(settings, processes, concurrency=100) as pids:
            celery = create_celery(settings)
            others = [emulator_pid, server.pid]
            workers0, others0 = sum(cpu_s(p) for p in pids), sum(cpu_s(p) for p in others)
            began = time.monotonic()
            with celery.producer_or_acquire() as producer:
                for conv in held:
                    celery.send_task("parley.drain", args=[conv], queue="parley", producer=producer)
            deadline = began + 300
            while client.xlen(Keys().replies) < total:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{client.xlen(Keys().replies)} of {total} turns in 300 s")
                time.sleep(0.05)
            elapsed = time.monotonic() - began
            workers_s = sum(cpu_s(p) for p in pids) - workers0
            others_s = sum(cpu_s(p) for p in others) - others0
        client.close()
    return {"rate": total / elapsed, "worker_ms": workers_s * 1000 / total, "others_ms": others_s * 1000 / total,
            "cores": (workers_s + others_s) / elapsed}


def scaling(size: Size) -> dict[str, object]:
    one = _rate(size, 1)
    two = _rate(size, 2)
    ceiling = 2000 / (two["worker_ms"] + two["others_ms"]) / one["rate"]
    return {"turns": size.ordered_convs * size.ordered_turns, "one_process_turns_per_s": round(one["rate"], 1),
            "two_processes_turns_per_s": round(two["rate"], 1), "ratio": round(two["rate"] / one["rate"], 2),
            "ceiling": round(ceiling, 2), "worker_cpu_ms_per_turn": round(two["worker_ms"], 2),
            "emulator_redis_cpu_ms_per_turn": round(two["others_ms"], 2),
            "cores_used_two": round(two["cores"], 2), "cores_used_one": round(one["cores"], 2)}
