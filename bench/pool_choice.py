"""Which Celery pool should run parley's workers? One worker process, N conversations x 1 turn, fixed upstream
latency; turns/s against the ideal (in-flight capacity / latency). Prints a table and writes JSON.

    python bench/pool_choice.py [--turns 400] [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import openai
import redis
import redis.asyncio

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from stack import start_worker, wait_ready  # noqa: E402

from parley.worker.local.background import free_port  # noqa: E402
from parley.worker.local.processes import spawn, stop  # noqa: E402
from parley.worker.local.redis_server import EmbeddedRedis  # noqa: E402
from parley.worker.settings import Settings  # noqa: E402
from parley.worker.store.ingress import Ingress  # noqa: E402
from parley.worker.store.keys import Keys  # noqa: E402


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


POOLS = [("threads", 100), ("threads", 200), ("prefork", 2), ("solo", 1)]
if os.environ.get("POOLS"):
    POOLS = [(p.split(":")[0], int(p.split(":")[1])) for p in os.environ["POOLS"].split(",")]


async def enqueue_all(settings: Settings, convs: list[str]) -> None:
    client = redis.asyncio.Redis.from_url(settings.redis_url_required, decode_responses=True)
    ingress = Ingress(client, settings)
    for conv in convs:
        await ingress.register_conversation(conv, created_at=0, metadata={}, key=None)
    from parley.worker.celery_app import create_celery

    celery = create_celery(settings)
    for conv in convs:
        result = await ingress.enqueue(conversation_id=conv, input="bench", model=None, instructions=None,
                                       metadata={}, idempotency_key=None)
        if result.need_wakeup:
            celery.send_task("parley.drain", args=[conv], queue="parley")
    await client.aclose()


def run(pool: str, concurrency: int, turns: int, latency_ms: int, upstream: str, redis_url: str,
        emulator_pid: int) -> dict[str, float]:
    settings = Settings(_env_file=None, redis_url=redis_url, openai_base_url=upstream, worker_pool=pool,  # type: ignore[arg-type]
                        worker_concurrency=concurrency, log_level="WARNING")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    sdk = openai.OpenAI(base_url=upstream, api_key="x")
    convs = [sdk.conversations.create().id for _ in range(turns)]
    worker = start_worker(settings, "bench", pool=pool, concurrency=concurrency)
    try:
        wait_ready(settings, ["bench"])
        worker_cpu, emulator_cpu = cpu_s(worker.pid), cpu_s(emulator_pid)
        started = time.monotonic()
        asyncio.run(enqueue_all(settings, convs))
        keys = Keys()
        deadline = started + 600
        pending = list(convs)
        while pending and time.monotonic() < deadline:
            pipe = client.pipeline(transaction=False)
            for conv in pending:
                pipe.exists(keys.inflight(conv), keys.inbox(conv))
            pending = [conv for conv, busy in zip(pending, pipe.execute(), strict=True) if busy]
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        worker_cpu, emulator_cpu = cpu_s(worker.pid) - worker_cpu, cpu_s(emulator_pid) - emulator_cpu
    finally:
        stop(worker)
    capacity = concurrency if pool == "threads" else concurrency  # one call in flight per slot
    ideal = capacity / (latency_ms / 1000)
    rate = turns / elapsed
    return {"pool": pool, "concurrency": concurrency, "turns": turns, "seconds": round(elapsed, 2),
            "turns_per_s": round(rate, 1), "ideal_per_s": round(ideal, 1),
            "worker_cpu_ms_per_turn": round(worker_cpu * 1000 / turns, 2),
            "emulator_cpu_ms_per_turn": round(emulator_cpu * 1000 / turns, 2),
            "fraction_of_ideal": round(rate / min(ideal, turns / (latency_ms / 1000)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "pool_choice.json"))
    args = parser.parse_args()
    port = free_port()
    emulator = spawn(["python", "-m", "parley", "emulator", "--port", str(port), "--latency-ms",
                      str(args.latency_ms)], quiet=True)
    rows = []
    try:
        time.sleep(1.5)
        with EmbeddedRedis() as server:
            for pool, concurrency in POOLS:
                turns = args.turns if pool == "threads" else min(args.turns, 40)
                rows.append(run(pool, concurrency, turns, args.latency_ms, f"http://127.0.0.1:{port}/v1",
                                server.url, emulator.pid))
                print(rows[-1], flush=True)
    finally:
        stop(emulator)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    print("\n| pool | concurrency | turns | turns/s | ideal turns/s | fraction of ideal |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pool']} | {r['concurrency']} | {r['turns']} | {r['turns_per_s']} | {r['ideal_per_s']} | "
              f"{r['fraction_of_ideal']} |")


if __name__ == "__main__":
    main()
