"""Scenario (10) of issue 11: the worker CPU a server-tool round costs. Two batches on the same machine and
settings (zero-latency upstream, non-streamed): plain turns, then turns whose model calls one server tool
before it answers (two upstream requests, the tool run and its records; the tool, ``bench_tools.add``, does
nothing else). The extra CPU per tool round is the difference per turn; target <= 1.5 ms, and the ratio of the
two is reported too.

A tool round necessarily makes one more upstream request (the follow-up carrying the outputs), so the same run
also measures that request alone: the CPU of one bare SDK ``responses.create`` made as the worker makes it
(non-streamed, stored on a conversation, the worker's clients, raw JSON), from 100 threads in a process of its
own against an emulator set up the same way. ``extra_minus_request_ms`` is then parley's own cost of a round
besides that request (the tool run, its records and events, the thread handoff)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
from harness import cpu_s, emulator, parley_workers
from scenarios import Size, _enqueue, make_conversations, settings_for

from parley.worker.celery_app import create_celery
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.store.keys import Keys

BENCH = Path(__file__).resolve().parent
BARE_THREADS = 100
"""As many threads as the measured worker runs (``concurrency=100``)."""


def _cpu_per_turn(size: Size, text: str) -> tuple[float, float]:
    """Worker CPU ms per turn and turns/s for ``size.tool_convs x size.ordered_turns`` turns of ``text``."""
    total = size.tool_convs * size.ordered_turns
    with EmbeddedRedis() as server, emulator() as upstream:
        settings = settings_for(server.url, upstream, stream_upstream=False, tools=["bench_tools"])
        convs = make_conversations(upstream, settings, size.tool_convs)
        held: list[str] = []
        asyncio.run(_enqueue(settings, [(c, f"{text} {i}") for i in range(size.ordered_turns) for c in convs],
                             rate=None, held=held))
        client = redis.Redis.from_url(server.url)
        env = {"PYTHONPATH": str(BENCH)}
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


def _bare_request_cpu_ms(requests: int) -> float:
    """CPU ms of one bare request, measured in a child process (its CPU only, like the worker's)."""
    with emulator() as upstream:
        child = subprocess.run([sys.executable, __file__, "bare", upstream, str(requests), str(BARE_THREADS)],
                               capture_output=True, text=True, timeout=300, check=True)
    return float(json.loads(child.stdout.strip().splitlines()[-1])["cpu_ms_per_request"])


def _bare_child(upstream: str, requests: int, threads: int) -> None:
    """In the child: ``threads`` threads, one conversation each, one untimed warm-up request each, then
    ``requests`` in all; prints the process's CPU ms per timed request."""
    from parley.worker.run.upstream import make_clients
    from parley.worker.settings import Settings

    settings = Settings(_env_file=None, openai_base_url=upstream, stream_upstream=False)
    clients = make_clients(settings, concurrency=threads)  # sharded as the worker's (32 connections each)
    convs = [clients[0].conversations.create().id for _ in range(threads)]
    per_thread = max(1, requests // threads)
    barrier, done = threading.Barrier(threads + 1), threading.Barrier(threads + 1)

    def call(client: object, conv: str, i: int) -> None:
        # As Upstream.generate_whole: the body as extra_body, the raw response read with json.loads.
        body = {"conversation": conv, "input": f"hello {i}", "model": settings.model,
                "metadata": {"parley_turn_id": f"bare{i}"}}
        raw = client.responses.with_raw_response.create(extra_body=body)  # type: ignore[attr-defined]
        json.loads(raw.http_response.content)

    def worker(k: int) -> None:
        client = clients[k % len(clients)]
        call(client, convs[k], -1)
        barrier.wait(timeout=120)
        for i in range(per_thread):
            call(client, convs[k], i)
        done.wait(timeout=300)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait(timeout=120)
    cpu0 = time.process_time()
    done.wait(timeout=300)
    cpu = time.process_time() - cpu0
    for t in pool:
        t.join()
    print(json.dumps({"cpu_ms_per_request": cpu * 1000 / (per_thread * threads)}))


def tools(size: Size) -> dict[str, object]:
    plain_ms, plain_rate = _cpu_per_turn(size, "hello")
    tool_ms, tool_rate = _cpu_per_turn(size, '[call add {"a": 3, "b": 4}]')
    bare_ms = _bare_request_cpu_ms(size.tool_convs * size.ordered_turns)
    extra = tool_ms - plain_ms
    return {"turns": size.tool_convs * size.ordered_turns, "plain_cpu_ms_per_turn": round(plain_ms, 2),
            "tool_cpu_ms_per_turn": round(tool_ms, 2), "extra_cpu_ms_per_round": round(extra, 2),
            "cpu_ratio": round(tool_ms / plain_ms, 2), "plain_turns_per_s": round(plain_rate, 1),
            "tool_turns_per_s": round(tool_rate, 1), "bare_request_cpu_ms": round(bare_ms, 2),
            "extra_minus_request_ms": round(extra - bare_ms, 2),
            "extra_to_request_ratio": round(extra / bare_ms, 2)}


if __name__ == "__main__" and sys.argv[1:2] == ["bare"]:
    _bare_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
