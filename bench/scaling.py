"""Scenario (9) of issue 14, many cores: ordered throughput with one worker process, then with two, on this
machine (zero-latency upstream, non-streamed), and the ratio between them (target >= 1.6).

The mailboxes are filled first with the wake-ups held back, then all wake-ups go at once and the clock runs
until the replies stream holds every turn (counted with XLEN: no subscriber spending CPU in this process).
"""

from __future__ import annotations

import asyncio
import time

import redis
from harness import emulator, parley_workers
from scenarios import Size, _enqueue, make_conversations, settings_for

from parley.worker.celery_app import create_celery
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.store.keys import Keys


def _rate(size: Size, processes: int) -> float:
    total = size.ordered_convs * size.ordered_turns
    with EmbeddedRedis() as server, emulator() as upstream:
        settings = settings_for(server.url, upstream, stream_upstream=False)
        convs = make_conversations(upstream, settings, size.ordered_convs)
        jobs = [(c, f"t{i}") for i in range(size.ordered_turns) for c in convs]
        held: list[str] = []
        asyncio.run(_enqueue(settings, jobs, rate=None, held=held))
        client = redis.Redis.from_url(server.url)
        with parley_workers(settings, processes, concurrency=100):
            celery = create_celery(settings)
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
        client.close()
    return total / elapsed


def scaling(size: Size) -> dict[str, object]:
    one = _rate(size, 1)
    two = _rate(size, 2)
    return {"turns": size.ordered_convs * size.ordered_turns, "one_process_turns_per_s": round(one, 1),
            "two_processes_turns_per_s": round(two, 1), "ratio": round(two / one, 2)}
