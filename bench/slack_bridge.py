"""The Slack bridge under load (issue: "Slack event ack p99 ≤ 100 ms at 50 events/s while two workers drain
turns on the same machine; relay delay from ``turn.completed`` to the fake's ``chat.stopStream`` p99 ≤ 50
ms").

Embedded Redis, the emulator, the fake Slack Web API (tests/slack_fake.py, in a process of its own:
bench/slack_fake_app.py), ``parley api`` with the bridge pointed at the fake, one ``parley slack-relay`` and
two worker processes, each a process of its own. Signed ``app_mention`` events (Slack's v0 HMAC) go to ``POST
/slack/events`` in an open loop at 50/s, each one starting a thread of its own (so each is a new
conversation and a turn). First with no worker running (the idle ack, the baseline); then, once the idle
phase's turns are answered, a trickle (4/s, the relay's quiet baseline); then 10 s with the two workers
draining the turns the events become ("busy"), and 10 s with a backlog besides that keeps them at full speed
("saturated", as busy_ingress). The ack is measured
client side and server side (the API's JSON request log); the relay delay is from the ``created_at`` of each
busy-phase turn's ``turn.completed`` (its conversation's Redis stream) to the fake's answer to that thread's
``chat.stopStream`` (both wall clock, one machine), and, to tell where it goes, to the thread's first
``chat.startStream``.

The relay follows its turns through one fan-out hub (one blocking XREAD over every followed stream, 20 ms
blocks: ``parley.api.bridges.relay.follow_turn``), so an event reaches it as soon as it is written, and a turn
that starts while the hub is blocked on others joins the read within 20 ms.

    BENCH_SLACK_SECONDS=5 python bench/slack_bridge.py    # the scenario alone, a shorter busy phase
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis
from busy_ingress import _cpu_waits
from harness import ROOT, api, cpu_s, emulator, parley_workers, percentile
from scenarios import _enqueue, _wake, make_conversations, settings_for
from slack_fake import TEAM_ID
from slack_support import conversation_for, envelope, mention, signed, slack_settings

from parley.worker.local.background import free_port, wait_http
from parley.worker.local.processes import spawn, stop
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

RATE_EPS = 50.0
BACKLOG_TURNS_PER_S = 400
"""As busy_ingress: above what two worker processes drain here, so the workers run at full speed all through
the busy phase (400 conversations of a backlog keep their 100 slots each full)."""
BUSY_S = 20.0
IDLE_S = 5.0
CHANNEL = "C2"
ROUTE = "/slack/events"
_numbers = itertools.count(1)


@contextmanager
def fake_slack_process() -> Iterator[str]:
    """bench/slack_fake_app.py; yields its base URL (``…/api/`` is the Web API, ``…/_fake/stops`` the
    record)."""
    port = free_port()
    proc = spawn(["python", str(ROOT / "bench" / "slack_fake_app.py"), str(port)], quiet=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_fake/ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def relay(settings: Settings) -> Iterator[int]:
    proc = spawn(["python", "-m", "parley", "slack-relay"],
                 env={**_env(settings), "PARLEY_LOG_LEVEL": "WARNING"}, quiet=True)
    try:
        yield proc.pid
    finally:
        stop(proc)


def _env(settings: Settings) -> dict[str, str]:
    from conftest import settings_env

    return settings_env(settings)


async def _events(url: str, *, rate: float, seconds: float) -> dict[str, object]:
    """Open loop: ``rate`` signed app_mention events a second for ``seconds``, each in a thread of its own.
    Returns the client-side latencies (s) of the 200s, the errors and the threads (root ts) sent."""
    latencies: list[float] = []
    threads: list[str] = []
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as http:

        async def one() -> None:
            nonlocal errors
            n = next(_numbers)
            ts = f"1712345678.{n:06d}"
            body = envelope(mention(f"question {n}", ts=ts, channel=CHANNEL), event_id=f"Ev{n:07d}")
            raw, headers = signed(body)
            began = time.perf_counter()
            try:
                response = await http.post(ROUTE, content=raw, headers=headers)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - began)
                threads.append(ts)
            else:
                errors += 1

        started = time.monotonic()
        tasks, n = [], 0
        while (now := time.monotonic()) < started + seconds:
            due = started + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one()))
            n += 1
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    return {"latencies": latencies, "errors": errors, "threads": threads, "rate": len(latencies) / elapsed}


def _server_ms(log: Path, start: int) -> list[float]:
    out = []
    with log.open() as f:
        f.seek(start)
        for line in f:
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if (entry.get("event") == "request" and entry.get("route") == ROUTE
                    and entry.get("method") == "POST" and entry.get("status") == 200):
                out.append(float(entry["duration_ms"]))
    return out


def _phase(url: str, api_pid: int, log: Path, seconds: float) -> dict[str, object]:
    start, began, (some0, api0) = log.stat().st_size, time.monotonic(), _cpu_waits(api_pid)
    client = asyncio.run(_events(url, rate=RATE_EPS, seconds=seconds))
    elapsed, (some1, api1) = time.monotonic() - began, _cpu_waits(api_pid)
    time.sleep(1.0)  # the last requests' log lines
    return {**client, "server_ms": _server_ms(log, start),
            "cpu_pressure": round((some1 - some0) / elapsed, 2),
            "api_cpu_wait": round((api1 - api0) / elapsed, 2)}


def _stops(fake_url: str) -> dict[str, float]:
    """thread root ts -> when the fake answered its chat.stopStream (the first, wall clock)."""
    body = httpx.get(f"{fake_url}/_fake/stops", timeout=30).json()
    out: dict[str, float] = {}
    for row in body["stops"]:
        if row["thread_ts"] and row["thread_ts"] not in out:
            out[row["thread_ts"]] = float(row["at"])
    return out


def _wait_stops(fake_url: str, threads: list[str], timeout_s: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        stops = _stops(fake_url)
        if all(t in stops for t in threads) or time.monotonic() > deadline:
            return stops
        time.sleep(0.5)


def _completed_at(settings: Settings, threads: list[str]) -> dict[str, float]:
    """thread root ts -> created_at of its turn's turn.completed event (the conversation's Redis stream)."""
    r = redis.Redis.from_url(settings.redis_url_required, decode_responses=True)
    keys = Keys(settings.key_prefix)
    out: dict[str, float] = {}
    for ts in threads:
        conv = conversation_for(r, settings, f"slack:{TEAM_ID}:{CHANNEL}:{ts}")
        if conv is None:
            continue
        for _, fields in r.xrange(keys.events(conv)):
            event = json.loads(fields["data"])
            if event["type"] == "turn.completed":
                out[ts] = float(event["created_at"])
                break
    r.close()
    return out


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (/proc/stat), to tell the scenario's share from the
    shared machine's."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _delays_ms(settings: Settings, fake_url: str, threads: list[str], timeout_s: float
               ) -> tuple[list[float], list[float]]:
    """Per answered turn: turn.completed -> chat.stopStream, and turn.completed -> chat.startStream (ms)."""
    stops = _wait_stops(fake_url, threads, timeout_s)
    starts = httpx.get(f"{fake_url}/_fake/stops", timeout=30).json()["starts"]
    completed = _completed_at(settings, threads)
    done = [t for t in threads if t in stops and t in completed and t in starts]
    return ([(stops[t] - completed[t]) * 1000 for t in done],
            [(float(starts[t]) - completed[t]) * 1000 for t in done])


def _children() -> dict[str, int]:
    """This process's children by role (emulator, redis, fake Slack), to say where a phase's CPU went."""
    roles = {"emulator": "emulator", "valkey": "redis", "redis-server": "redis",
             "slack_fake_app": "fake_slack"}
    out: dict[str, int] = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            for mark, role in roles.items():
                if mark in cmdline:
                    out[role] = int(pid)
    return out


def _worker_phase(url: str, api_pid: int, log: Path, seconds: float, pids: list[int], relay_pid: int,
                  settings: Settings, fake_url: str) -> dict[str, object]:
    ours = [*pids, api_pid, relay_pid]
    roles = {"api": api_pid, "relay": relay_pid, **_children()}
    cpu0, machine0, began = sum(cpu_s(p) for p in ours), _machine_busy_s(), time.monotonic()
    workers0, roles0 = sum(cpu_s(p) for p in pids), {role: cpu_s(pid) for role, pid in roles.items()}
    phase = _phase(url, api_pid, log, seconds)
    elapsed = time.monotonic() - began
    for role, pid in roles.items():
        phase[f"{role}_cpu_cores"] = round((cpu_s(pid) - roles0[role]) / elapsed, 2)
    phase["workers_cpu_cores"] = round((sum(cpu_s(p) for p in pids) - workers0) / elapsed, 2)
    phase["bridge_cpu_cores"] = round((sum(cpu_s(p) for p in ours) - cpu0) / elapsed, 2)
    phase["machine_cpu_cores"] = round((_machine_busy_s() - machine0) / elapsed, 2)
    phase["delays"], phase["to_start"] = _delays_ms(settings, fake_url, phase["threads"], 15)  # type: ignore[arg-type]
    return phase


def slack(seconds: float = BUSY_S, upstream_latency_ms: int = 0) -> dict[str, object]:
    """Idle ack (no worker); the relay delay of a trickle of events (4/s, the relay's quiet baseline) once
    the workers run; then ack and relay delay at 50 events/s for half of ``seconds`` with the two workers
    draining the events' turns ("busy"), and for the other half with a backlog besides that keeps them at full
    speed, as busy_ingress does ("saturated")."""
    load_before = os.getloadavg()[0]
    with EmbeddedRedis() as server, emulator(upstream_latency_ms) as upstream, \
            fake_slack_process() as fake_url, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "api.log"
        settings = slack_settings(settings_for(server.url, upstream, log_format="json", log_level="INFO"),
                                  f"{fake_url}/api/")
        backlog_convs = make_conversations(upstream, settings, 400)
        backlog_turns = int(BACKLOG_TURNS_PER_S * (seconds / 2 + 3))
        with api(settings, log_path=str(log)) as (url, api_pid), relay(settings) as relay_pid:
            asyncio.run(_events(url, rate=RATE_EPS, seconds=1.0))  # warm up (Bolt's auth.test, connections)
            machine0, began = _machine_busy_s(), time.monotonic()
            idle = _phase(url, api_pid, log, IDLE_S)
            idle["machine_cpu_cores"] = round((_machine_busy_s() - machine0) / (time.monotonic() - began), 2)
            with parley_workers(settings, 2, concurrency=100) as pids:
                drained = _wait_stops(fake_url, list(idle["threads"]), 30)  # type: ignore[arg-type]
                idle_answered = sum(t in drained for t in idle["threads"])  # type: ignore[union-attr]
                quiet = asyncio.run(_events(url, rate=4.0, seconds=5.0))
                quiet_delays, quiet_to_start = _delays_ms(settings, fake_url, quiet["threads"], 10)  # type: ignore[arg-type]
                busy = _worker_phase(url, api_pid, log, seconds / 2, pids, relay_pid, settings, fake_url)
                held: list[str] = []  # the backlog, accepted with its wake-ups held, then woken at once
                jobs = [(backlog_convs[i % len(backlog_convs)], f"b{i}") for i in range(backlog_turns)]
                asyncio.run(_enqueue(settings, jobs, rate=None, held=held))
                _wake(settings, held)
                time.sleep(1.0)  # both workers at full speed
                saturated = _worker_phase(url, api_pid, log, seconds / 2, pids, relay_pid, settings, fake_url)
                r = redis.Redis.from_url(settings.redis_url_required)
                keys = Keys(settings.key_prefix)
                saturated["backlog_left_after"] = sum(r.llen(keys.inbox(c)) for c in backlog_convs)
                r.close()
            calls = httpx.get(f"{fake_url}/_fake/stops", timeout=30).json()["calls"]
    out: dict[str, object] = {"rate_eps": RATE_EPS, "seconds_per_phase": seconds / 2, "idle_seconds": IDLE_S,
                              "upstream_latency_ms": upstream_latency_ms, "backlog_turns": backlog_turns,
                              "idle_turns_answered_before_busy": idle_answered}
    for name, phase in (("idle", idle), ("busy", busy), ("saturated", saturated)):
        client = [v * 1000 for v in phase.pop("latencies")]  # type: ignore[union-attr]
        server_ms: list[float] = phase.pop("server_ms")  # type: ignore[assignment]
        threads: list[str] = phase.pop("threads")  # type: ignore[assignment]
        delays: list[float] = phase.pop("delays", [])  # type: ignore[assignment]
        to_start: list[float] = phase.pop("to_start", [])  # type: ignore[assignment]
        out |= {f"events_{name}": len(client), f"errors_{name}": phase.pop("errors"),
                f"achieved_eps_{name}": round(float(phase.pop("rate")), 1),  # type: ignore[arg-type]
                f"ack_{name}_p50_ms": round(percentile(server_ms, 50), 2),
                f"ack_{name}_p99_ms": round(percentile(server_ms, 99), 2),
                f"client_ack_{name}_p50_ms": round(percentile(client, 50), 2),
                f"client_ack_{name}_p99_ms": round(percentile(client, 99), 2),
                **{f"{key}_{name}": value for key, value in phase.items()}}
        if name != "idle":
            out |= {f"ack_{name}_to_idle_p99": round(float(out[f"ack_{name}_p99_ms"]) /
                                                     float(out["ack_idle_p99_ms"]), 2),
                    f"relay_samples_{name}": len(delays), f"turns_{name}": len(threads),
                    f"relay_{name}_p50_ms": round(percentile(delays, 50), 2),
                    f"relay_{name}_p99_ms": round(percentile(delays, 99), 2),
                    f"relay_{name}_max_ms": round(max(delays, default=float("nan")), 2),
                    f"relay_to_start_{name}_p50_ms": round(percentile(to_start, 50), 2),
                    f"relay_to_start_{name}_p99_ms": round(percentile(to_start, 99), 2)}
    return out | {"relay_quiet_samples": len(quiet_delays),
                  "relay_quiet_p50_ms": round(percentile(quiet_delays, 50), 2),
                  "relay_quiet_max_ms": round(max(quiet_delays, default=float("nan")), 2),
                  "relay_to_start_quiet_p50_ms": round(percentile(quiet_to_start, 50), 2),
                  "slack_calls": calls, "load_avg_1m_before": round(load_before, 2)}


if __name__ == "__main__":
    print(json.dumps(slack(float(os.environ.get("BENCH_SLACK_SECONDS", BUSY_S)),
                           int(os.environ.get("BENCH_SLACK_UPSTREAM_MS", "0"))), indent=2))
