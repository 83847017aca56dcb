"""The benchmark scenarios of issue 6. Each returns plain rows; bench/run.py repeats, reports and plots them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import redis
import redis.asyncio
from harness import api, bare_api, cpu_s, emulator, naive_workers, parley_workers, percentile, rss_mb

from parley.worker.celery_app import create_celery
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress
from parley.worker.store.keys import Keys


@dataclass(frozen=True)
class Size:
    ingress_s: float
    ordered_convs: int
    ordered_turns: int
    io_turns: int
    fairness_backlog: int
    fairness_new: int
    memory_turns: int
    inflight: int
    tool_convs: int
    """Conversations of the tools scenario (× ``ordered_turns``): a per-turn CPU figure needs fewer turns
    than a throughput one."""

    @classmethod
    def full(cls) -> Size:
        # Sized so that the whole run, 2 repeats, takes about ten minutes on a 2-core machine.
        return cls(ingress_s=3.0, ordered_convs=1000, ordered_turns=5, io_turns=2000, fairness_backlog=5000,
                   fairness_new=100, memory_turns=10_000, inflight=500, tool_convs=400)

    @classmethod
    def quick(cls) -> Size:
        return cls(ingress_s=1.5, ordered_convs=100, ordered_turns=3, io_turns=300, fairness_backlog=500,
                   fairness_new=20, memory_turns=1000, inflight=100, tool_convs=100)


def settings_for(redis_url: str, upstream: str, **overrides: object) -> Settings:
    base: dict[str, object] = dict(redis_url=redis_url, openai_base_url=upstream, log_level="WARNING",
                                   worker_metrics_port=0, mailbox_cap=100_000, global_queue_cap=10_000_000,
                                   stream_upstream=False)
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[arg-type]


# --- helpers -------------------------------------------------------------------------------------------


def make_conversations(upstream: str, settings: Settings, count: int) -> list[str]:
    sdk = openai.OpenAI(base_url=upstream, api_key="x")
    with ThreadPoolExecutor(16) as pool:
        convs = list(pool.map(lambda _: sdk.conversations.create().id, range(count)))

    async def register() -> None:
        client = redis.asyncio.Redis.from_url(settings.redis_url_required, decode_responses=True)
        ingress = Ingress(client, settings)
        for conv in convs:
            await ingress.register_conversation(conv, created_at=0, metadata={}, key=None)
        await client.aclose()

    asyncio.run(register())
    return convs


async def _enqueue(settings: Settings, jobs: list[tuple[str, str]], rate: float | None,
                   held: list[str] | None = None) -> dict[str, float]:
    """Accept turns through the ingress protocol (open loop at ``rate`` per second, or as fast as possible);
    returns turn id -> accept time. With ``held``, the wake-ups are not sent but collected there."""
    client = redis.asyncio.Redis.from_url(settings.redis_url_required, decode_responses=True)
    ingress = Ingress(client, settings)
    celery = create_celery(settings)
    accepted: dict[str, float] = {}
    started = time.monotonic()
    for n, (conv, text) in enumerate(jobs):
        if rate:
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        result = await ingress.enqueue(conversation_id=conv, input=text, model=None, instructions=None,
                                       metadata={}, idempotency_key=None)
        accepted[result.turn_id] = time.time()
        if result.need_wakeup and held is not None:
            held.append(conv)
        elif result.need_wakeup:
            celery.send_task("parley.drain", args=[conv], queue="parley")
    await client.aclose()
    return accepted


def _wake(settings: Settings, convs: list[str]) -> None:
    celery = create_celery(settings)
    with celery.producer_or_acquire() as producer:
        for conv in convs:
            celery.send_task("parley.drain", args=[conv], queue="parley", producer=producer)


class Completions:
    """Counts turn.completed events from pub/sub, with the time each arrived: from every channel matching
    ``pattern``, or only from ``channels``."""

    def __init__(self, redis_url: str, pattern: str = "", channels: list[str] | None = None) -> None:
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        if channels:
            self.pubsub.subscribe(*channels)
        else:
            self.pubsub.psubscribe(pattern)
        self.at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is None:
                continue
            data = message["data"]
            if data.startswith("{"):
                event = json.loads(data)
                if event["type"] in ("turn.completed", "turn.failed"):
                    self.at[event["turn_id"]] = time.time()
            else:  # the naive baseline publishes "<turn id> <length>"
                self.at[data.split(" ", 1)[0]] = time.time()

    def wait(self, count: int, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while len(self.at) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return time.time()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pubsub.close()


# --- 1. ingress ------------------------------------------------------------------------------------------


async def _load(url: str, paths: list[str], *, rate: float | None, seconds: float, connections: int
                ) -> dict[str, float]:
    """Open loop at ``rate`` requests/s (or closed loop with ``connections`` workers when ``rate`` is None)."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as http:
        deadline = time.monotonic() + seconds

        async def one(n: int) -> None:
            nonlocal errors
            began = time.perf_counter()
            try:
                response = await http.post(paths[n % len(paths)], json={"input": "hello there"})
                ok = response.status_code < 300
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - began)
            else:
                errors += 1

        started = time.monotonic()
        if rate is None:
            counter = iter(range(10**9))

            async def worker() -> None:
                while time.monotonic() < deadline:
                    await one(next(counter))

            await asyncio.gather(*(worker() for _ in range(connections)))
        else:
            tasks = []
            n = 0
            while (now := time.monotonic()) < deadline:
                due = started + n / rate
                if due > now:
                    await asyncio.sleep(due - now)
                tasks.append(asyncio.create_task(one(n)))
                n += 1
            await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "errors": errors}


def ingress(size: Size) -> dict[str, object]:
    with EmbeddedRedis() as server, emulator() as upstream:
        settings = settings_for(server.url, upstream)
        convs = make_conversations(upstream, settings, 200)
        paths = [f"/v1/conversations/{c}/turns" for c in convs]
        out: dict[str, object] = {}
        with api(settings) as (url, pid):
            top = asyncio.run(_load(url, paths, rate=None, seconds=size.ingress_s, connections=32))
            sweep = []
            for fraction in (0.25, 0.5, 0.75, 1.0):
                row = asyncio.run(_load(url, paths, rate=top["rps"] * fraction, seconds=size.ingress_s,
                                        connections=256))
                sweep.append({"offered_rps": round(top["rps"] * fraction, 1), **{k: round(v, 2)
                                                                                  for k, v in row.items()}})
            out["parley_max_rps"] = round(top["rps"], 1)
            out["parley_sweep"] = sweep
            out["api_rss_mb"] = round(rss_mb(pid), 1)
        with bare_api(server.url) as url:
            bare_top = asyncio.run(_load(url, paths, rate=None, seconds=size.ingress_s, connections=32))
            bare_half = asyncio.run(_load(url, paths, rate=bare_top["rps"] / 2, seconds=size.ingress_s,
                                          connections=256))
        out["bare_max_rps"] = round(bare_top["rps"], 1)
        out["bare_half_p99_ms"] = round(bare_half["p99_ms"], 2)
        half = next(r for r in sweep if r and abs(r["offered_rps"] - top["rps"] / 2) < 1)
        out["parley_half_p50_ms"], out["parley_half_p99_ms"] = half["p50_ms"], half["p99_ms"]
        out["max_rps_ratio"] = round(top["rps"] / bare_top["rps"], 2)
        return out


# --- 2. ordered throughput ----------------------------------------------------------------------------------


def ordered(size: Size, *, stream: bool) -> dict[str, object]:
    total = size.ordered_convs * size.ordered_turns
    with EmbeddedRedis() as server, emulator() as upstream:
        settings = settings_for(server.url, upstream, stream_upstream=stream)
        convs = make_conversations(upstream, settings, size.ordered_convs)
        jobs = [(c, f"t{i}") for i in range(size.ordered_turns) for c in convs]
        completions = Completions(server.url, Keys().events("*"))
        with parley_workers(settings, 2, concurrency=100) as pids:
            began, cpu0 = time.time(), sum(cpu_s(p) for p in pids)
            asyncio.run(_enqueue(settings, jobs, rate=None))
            ended = completions.wait(total, timeout_s=300)
            parley_cpu = sum(cpu_s(p) for p in pids) - cpu0
        completions.close()
        parley_rate = len(completions.at) / (ended - began)

        naive_convs = make_conversations(upstream, settings, total)  # no ordering: one conversation per turn
        client = redis.Redis.from_url(server.url)
        client.flushdb()
        naive_done = Completions(server.url, "naive:replies")
        with naive_workers(server.url, upstream, pool="threads", concurrency=100, count=2, stream=stream) as pids:
            from celery import Celery

            app = Celery(broker=server.url)
            began, cpu0 = time.time(), sum(cpu_s(p) for p in pids)
            with app.producer_or_acquire() as producer:
                for n, conv in enumerate(naive_convs):
                    app.send_task("naive.turn", args=[conv, "t", f"n{n}"], queue="naive", producer=producer)
            ended = naive_done.wait(total, timeout_s=300)
            naive_cpu = sum(cpu_s(p) for p in pids) - cpu0
        naive_done.close()
        naive_rate = len(naive_done.at) / (ended - began)
    return {"turns": total, "parley_turns_per_s": round(parley_rate, 1),
            "naive_turns_per_s": round(naive_rate, 1), "ratio": round(parley_rate / naive_rate, 2),
            "parley_worker_cpu_ms_per_turn": round(parley_cpu * 1000 / total, 2),
            "naive_worker_cpu_ms_per_turn": round(naive_cpu * 1000 / total, 2)}


# --- 3. I/O concurrency -------------------------------------------------------------------------------------


def _peak_inflight(upstream: str, stop: threading.Event, peak: list[int]) -> None:
    state_url = upstream.replace("/v1", "/_emulator/state")
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], len(httpx.get(state_url, timeout=1).json()["locked"]))
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def _direct(upstream: str, convs: list[str], warm: list[str], concurrency: int, *, stream: bool) -> float:
    """The physical anchor: the same calls from a thread pool, no queue; ``warm`` first, untimed."""
    sdk = openai.OpenAI(base_url=upstream, api_key="x", max_retries=0)

    def call(conv: str) -> None:
        if stream:
            for _ in sdk.responses.create(conversation=conv, input="t", model="m", stream=True):
                pass
        else:
            sdk.responses.create(conversation=conv, input="t", model="m")

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, warm))
        began = time.monotonic()
        list(pool.map(call, convs))
        return len(convs) / (time.monotonic() - began)


def _naive_rate(server_url: str, upstream: str, convs: list[str], warm: list[str], *, pool: str,
                concurrency: int, stream: bool) -> float:
    from celery import Celery

    done = Completions(server_url, "naive:replies")
    with naive_workers(server_url, upstream, pool=pool, concurrency=concurrency, stream=stream):
        app = Celery(broker=server_url)
        began = 0.0
        for batch, tag in ((warm, "warm"), (convs, pool)):
            began = time.time()
            with app.producer_or_acquire() as producer:
                for k, conv in enumerate(batch):
                    app.send_task("naive.turn", args=[conv, "t", f"{tag}{k}"], queue="naive",
                                  producer=producer)
            ended = done.wait(len(warm) + (len(convs) if tag == pool else 0), timeout_s=300)
    done.close()
    return sum(1 for turn in done.at if not turn.startswith("warm")) / (ended - began)


def io_concurrency(size: Size, *, stream: bool, latency_ms: int = 1000, concurrency: int = 400
                   ) -> dict[str, object]:
    """Each side first runs one untimed wave of ``concurrency`` turns, so what is timed is a worker (or pool)
    whose threads and HTTP connections are up, as after its first second in production."""
    turns = size.io_turns
    out: dict[str, object] = {"turns": turns, "latency_ms": latency_ms, "concurrency": concurrency,
                              "ideal_per_s": round(concurrency / (latency_ms / 1000), 1)}
    with EmbeddedRedis() as server, emulator(latency_ms) as upstream:
        settings = settings_for(server.url, upstream, stream_upstream=stream, worker_concurrency=concurrency)
        warm, convs = _split(make_conversations(upstream, settings, concurrency + turns), concurrency)
        warm_done = Completions(server.url, channels=[Keys().events(c) for c in warm])
        completions = Completions(server.url, channels=[Keys().events(c) for c in convs])
        stop, peak = threading.Event(), [0]
        watcher = threading.Thread(target=_peak_inflight, args=(upstream, stop, peak), daemon=True)
        # The turns are accepted into their mailboxes before the clock starts, as an API process elsewhere
        # would (scenario 1 measures that); the clock covers their wake-ups, as it covers naive Celery's
        # messages, so the figure is the worker's and not this process's.
        held_warm: list[str] = []
        held: list[str] = []
        asyncio.run(_enqueue(settings, [(c, "t") for c in warm], rate=None, held=held_warm))
        asyncio.run(_enqueue(settings, [(c, "t") for c in convs], rate=None, held=held))
        with parley_workers(settings, 1, concurrency=concurrency) as pids:
            _wake(settings, held_warm)
            warm_done.wait(len(warm), timeout_s=120)
            watcher.start()
            began = time.time()
            _wake(settings, held)
            ended = completions.wait(turns, timeout_s=300)
            out["worker_rss_mb"] = round(rss_mb(pids[0]), 1)
        stop.set()
        watcher.join()
        warm_done.close()
        completions.close()
        out["parley_per_s"] = round(len(completions.at) / (ended - began), 1)
        out["parley_peak_inflight"] = peak[0]
        direct_warm, direct_convs = _split(make_conversations(upstream, settings, concurrency + turns),
                                           concurrency)
        direct_rate = _direct(upstream, direct_convs, direct_warm, concurrency, stream=stream)
        out["direct_sdk_per_s"] = round(direct_rate, 1)
        out["ratio_to_direct"] = round(float(out["parley_per_s"]) / float(out["direct_sdk_per_s"]), 2)
        for pool, workers_c, n in (("threads", concurrency, turns), ("prefork", 2, min(turns, 10))):
            naive_warm, naive_convs = _split(make_conversations(upstream, settings, workers_c + n), workers_c)
            naive_rate = _naive_rate(server.url, upstream, naive_convs, naive_warm, pool=pool,
                                     concurrency=workers_c, stream=stream)
            out[f"naive_{pool}_per_s"] = round(naive_rate, 1)
    return out


def _split(items: list[str], head: int) -> tuple[list[str], list[str]]:
    return items[:head], items[head:]


# --- 4. overhead ----------------------------------------------------------------------------------------------


def overhead(size: Size, *, rate: float) -> dict[str, object]:
    turns, warm_up = max(200, int(rate * 5)), max(50, int(rate))
    with EmbeddedRedis() as server, emulator() as upstream:
        settings = settings_for(server.url, upstream)
        convs = make_conversations(upstream, settings, warm_up + turns)
        warm_convs, convs = convs[:warm_up], convs[warm_up:]
        completions = Completions(server.url, Keys().events("*"))
        with parley_workers(settings, 2, concurrency=100):
            # One second at the same rate first, not measured: the workers' first turns open HTTP connections
            # and start pool threads, which is start-up, not steady-state overhead.
            asyncio.run(_enqueue(settings, [(c, "t") for c in warm_convs], rate=rate))
            completions.wait(warm_up, timeout_s=60)
            accepted = asyncio.run(_enqueue(settings, [(c, "t") for c in convs], rate=rate))
            completions.wait(warm_up + turns, timeout_s=120)
        completions.close()
        log = httpx.get(upstream.replace("/v1", "/_emulator/requests"), timeout=30).json()
    by_conv = {r["conversation_id"]: r for r in log}
    turn_conv = dict(zip(accepted, convs, strict=True))
    to_upstream = [by_conv[turn_conv[t]]["started_at"] - at for t, at in accepted.items()]
    to_subscriber = [completions.at[t] - by_conv[turn_conv[t]]["ended_at"] for t in accepted if t in completions.at]
    return {"offered_rps": rate, "turns": turns,
            "accept_to_upstream_p50_ms": round(percentile(to_upstream, 50) * 1000, 2),
            "accept_to_upstream_p99_ms": round(percentile(to_upstream, 99) * 1000, 2),
            "upstream_to_subscriber_p50_ms": round(percentile(to_subscriber, 50) * 1000, 2),
            "upstream_to_subscriber_p99_ms": round(percentile(to_subscriber, 99) * 1000, 2)}


# --- 5. fairness ----------------------------------------------------------------------------------------------


def fairness(size: Size) -> dict[str, object]:
    with EmbeddedRedis() as server, emulator() as upstream:
        settings = settings_for(server.url, upstream)
        busy, *others = make_conversations(upstream, settings, 1 + 2 * size.fairness_new)
        warm, fresh = others[:size.fairness_new], others[size.fairness_new:]
        # Only the new conversations' channels, as their bot would listen: the measuring process is not kept
        # busy by the backlog's events.
        completions = Completions(server.url, channels=[Keys().events(c) for c in warm + fresh])
        with parley_workers(settings, 1, concurrency=50):
            # A worker that has been running: its pool threads and HTTP connections exist (start-up is not
            # what this scenario measures).
            asyncio.run(_enqueue(settings, [(c, "warm") for c in warm], rate=200))
            completions.wait(len(warm), timeout_s=60)
            held: list[str] = []
            asyncio.run(_enqueue(settings, [(busy, f"b{i}") for i in range(size.fairness_backlog)], rate=None,
                                 held=held))
            _wake(settings, held)
            time.sleep(0.5)  # the backlog is draining
            accepted = asyncio.run(_enqueue(settings, [(c, "first") for c in fresh], rate=200))
            completions.wait(len(warm) + len(fresh), timeout_s=300)
            backlog_left = redis.Redis.from_url(server.url).llen(Keys().inbox(busy))
        completions.close()
    latencies = [completions.at[t] - at for t, at in accepted.items() if t in completions.at]
    return {"backlog": size.fairness_backlog, "new_conversations": len(fresh),
            "first_turn_p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "first_turn_p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "backlog_left_when_new_done": backlog_left}


# --- 6. memory ------------------------------------------------------------------------------------------------


def memory(size: Size) -> dict[str, object]:
    with EmbeddedRedis() as server, emulator() as upstream:
        settings = settings_for(server.url, upstream)
        convs = make_conversations(upstream, settings, 100)
        client = redis.Redis.from_url(server.url)
        before = int(client.info("memory")["used_memory"])
        asyncio.run(_enqueue(settings, [(convs[i % 100], "a short user message") for i in range(size.memory_turns)],
                             rate=None))
        after = int(client.info("memory")["used_memory"])
        keys = Keys()
        sample_conv = convs[0]
        turn_id = client.lindex(keys.inbox(sample_conv), 0).decode()
        per_turn_keys = client.memory_usage(keys.turn(sample_conv, turn_id)) or 0
    return {"queued_turns": size.memory_turns, "redis_bytes_per_turn": round((after - before) / size.memory_turns),
            "memory_usage_turn_keys_bytes": per_turn_keys}


def worker_rss(size: Size) -> dict[str, object]:
    """Worker RSS with ``size.inflight`` turns in flight at once (2 s upstream latency)."""
    with EmbeddedRedis() as server, emulator(2000) as upstream:
        settings = settings_for(server.url, upstream, worker_concurrency=size.inflight, stream_upstream=True)
        convs = make_conversations(upstream, settings, size.inflight)
        stop, peak = threading.Event(), [0]
        watcher = threading.Thread(target=_peak_inflight, args=(upstream, stop, peak), daemon=True)
        with parley_workers(settings, 1, concurrency=size.inflight) as pids:
            watcher.start()
            asyncio.run(_enqueue(settings, [(c, "t") for c in convs], rate=None))
            top = 0.0
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                top = max(top, rss_mb(pids[0]))
                time.sleep(0.1)
        stop.set()
        watcher.join()
    return {"inflight_target": size.inflight, "peak_inflight": peak[0], "worker_peak_rss_mb": round(top, 1)}


# --- 7. webhooks ---------------------------------------------------------------------------------------------


def webhooks(size: Size) -> dict[str, object]:
    """Ordered throughput (2 worker processes, zero-latency upstream) with every conversation's webhook at a
    receiver that never answers, against the same load with no webhook at all (no dispatcher either): a
    hanging receiver must not slow turns."""
    from webhooks_support import dispatcher, receiver

    from parley.worker.local.background import free_port
    from parley.worker.webhooks.signing import generate_secret

    total = size.ordered_convs * size.ordered_turns
    rates: dict[str, float] = {}
    held, dispatcher_cpu = 0, 0.0
    for side in ("none", "hanging"):
        with EmbeddedRedis() as server, emulator() as upstream, tempfile.TemporaryDirectory() as tmp:
            secret, port = generate_secret(), free_port()
            url = f"http://127.0.0.1:{port}/hook" if side == "hanging" else None
            settings = settings_for(server.url, upstream, webhook_secret=secret, webhook_metrics_port=0,
                                    webhook_url=url)
            convs = make_conversations(upstream, settings, size.ordered_convs)
            jobs = [(c, f"t{i}") for i in range(size.ordered_turns) for c in convs]
            with contextlib.ExitStack() as stack:
                if side == "hanging":
                    stack.enter_context(receiver(port, Path(tmp) / "ids.txt", secret, hang=True))
                    dispatcher_pid = stack.enter_context(dispatcher(settings, "bench")).pid
                    _wait_group(server.url)
                    dispatcher_cpu = cpu_s(dispatcher_pid)
                completions = Completions(server.url, Keys().events("*"))
                with parley_workers(settings, 2, concurrency=100):
                    began = time.time()
                    asyncio.run(_enqueue(settings, jobs, rate=None))
                    ended = completions.wait(total, timeout_s=300)
                completions.close()
                rates[side] = len(completions.at) / (ended - began)
                if side == "hanging":
                    dispatcher_cpu = cpu_s(dispatcher_pid) - dispatcher_cpu
                    client = redis.Redis.from_url(server.url, decode_responses=True)
                    held = int(client.zcard(Keys().webhook_retries))
    return {"turns": total, "no_webhook_turns_per_s": round(rates["none"], 1),
            "hanging_webhook_turns_per_s": round(rates["hanging"], 1),
            "ratio": round(rates["hanging"] / rates["none"], 3), "deliveries_waiting_for_retry": held,
            "dispatcher_cpu_ms_per_turn": round(dispatcher_cpu * 1000 / total, 3)}


def _wait_group(redis_url: str) -> None:
    from parley.worker.webhooks.store import GROUP

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if any(g["name"] == GROUP for g in client.xinfo_groups(Keys().replies)):
                return
        except redis.ResponseError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the webhook dispatcher did not start")
