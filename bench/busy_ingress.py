"""Ingress while workers are busy (issue 14): POST …/turns in an open loop at a fixed rate, first with no
worker running (the idle ingress), then while two worker processes drain a backlog at full speed on the same
machine, at their default priority and then as a shared host is meant to run them: ``PARLEY_WORKER_NICE=19``,
with the stand-in upstream at nice 19 too (in a deployment its CPU is OpenAI's, not the host's; on this machine
the emulator took a fifth of the cores the workers left). The figure is the API's own view,
from its request log: the server-side p99 of ``POST …/turns``, busy against idle, measured in the same run. On
a shared machine the figures include its contention, so each phase also says how much of the time some task
waited for a CPU (``cpu_pressure_*``, Linux PSI) and the API's event loop did (``api_cpu_wait_*``)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import redis
from harness import api, cpu_s, emulator_process, parley_workers, percentile
from scenarios import Size, _enqueue, _load, _wake, make_conversations, settings_for

from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

TURNS_ROUTE = "/v1/conversations/{conversation_id}/turns"
RATE_RPS = 50.0
"""A fixed, ordinary load: about a fifth of what one API process accepts on this machine."""
SHARED_HOST_NICE = 19
"""The workers' and the emulator's niceness in the last phase (``parley up`` gives its workers the same)."""
DRAIN_TURNS_PER_S = 800
"""Well above what two worker processes drain here (230–480/s, as busy as the machine is), so the backlog
outlasts a busy phase (``backlog_left_at_end_*`` says it did)."""


PIDS: dict[str, int] = {}
"""The processes whose CPU each phase reports: the API, the emulator and Redis."""


def server_durations_ms(log_text: str) -> list[float]:
    """``duration_ms`` of every accepted ``POST …/turns`` in a span of the API's JSON request log."""
    out = []
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if (entry.get("event") == "request" and entry.get("method") == "POST"
                and entry.get("route") == TURNS_ROUTE and entry.get("status") == 202):
            out.append(float(entry["duration_ms"]))
    return out


def _cpu_waits(api_pid: int) -> tuple[float, float]:
    """Seconds some task of the machine waited for a CPU (Linux PSI) and the API's event loop thread waited
    on the run queue (schedstat): the shared machine's contention, which the latency figures include."""
    try:
        some = Path("/proc/pressure/cpu").read_text().split("total=")[1].split()[0]
        waited = Path(f"/proc/{api_pid}/schedstat").read_text().split()[1]
    except (OSError, IndexError):
        return float("nan"), float("nan")
    return int(some) / 1e6, int(waited) / 1e9


def _phase(url: str, api_pid: int, paths: list[str], log: Path, seconds: float) -> dict[str, object]:
    """One open-loop run: the server-side durations it left in the log, the client's figures and the share of
    the time the machine (PSI) and the API's loop waited for a CPU."""
    start, began, (some0, api0) = log.stat().st_size, time.monotonic(), _cpu_waits(api_pid)
    cpu0 = {name: cpu_s(pid) for name, pid in PIDS.items()}
    client = asyncio.run(_load(url, paths, rate=RATE_RPS, seconds=seconds, connections=64))
    elapsed, (some1, api1) = time.monotonic() - began, _cpu_waits(api_pid)
    cores = {f"{name}_cpu_cores": round((cpu_s(pid) - cpu0[name]) / elapsed, 2) for name, pid in PIDS.items()}
    time.sleep(1.0)  # the last requests' lines (a starved API writes them late)
    with log.open() as f:
        f.seek(start)
        server = server_durations_ms(f.read())
    return {"server_ms": server, "client": client, "cpu_pressure": round((some1 - some0) / elapsed, 2),
            "api_cpu_wait": round((api1 - api0) / elapsed, 2), **cores}


def _busy(settings: Settings, url: str, api_pid: int, paths: list[str], log: Path, seconds: float,
          backlog: list[str]) -> dict[str, object]:
    """A phase with two worker processes draining a backlog at full speed. The backlog is accepted through
    the ingress protocol with its wake-ups held, then woken at once: 400 conversations keep both workers' 100
    slots full."""
    held: list[str] = []
    jobs = [(backlog[i % len(backlog)], f"b{i}") for i in range(int(DRAIN_TURNS_PER_S * (seconds + 3)))]
    asyncio.run(_enqueue(settings, jobs, rate=None, held=held))
    with parley_workers(settings, 2, concurrency=100) as pids:
        _wake(settings, held)
        time.sleep(1.0)  # both workers at full speed
        cpu0, began = sum(cpu_s(p) for p in pids), time.monotonic()
        phase = _phase(url, api_pid, paths, log, seconds)
        cores = (sum(cpu_s(p) for p in pids) - cpu0) / (time.monotonic() - began)
        phase["workers_cpu_cores"] = round(cores, 2)
        client = redis.Redis.from_url(settings.redis_url_required)
        phase["backlog_left_at_end"] = sum(client.llen(Keys().inbox(c)) for c in backlog)
    return phase


def _renice(pid: int, nice: int) -> None:
    """Every thread of ``pid`` and its session's autogroup (each spawned process leads a session of its own)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.setpriority(os.PRIO_PROCESS, int(tid), nice)
    Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")


def _shared_host(settings: Settings, url: str, api_pid: int, paths: list[str], log: Path, seconds: float,
                 backlog: list[str], emulator_pid: int) -> dict[str, object]:
    _renice(emulator_pid, SHARED_HOST_NICE)
    try:
        return _busy(settings.model_copy(update={"worker_nice": SHARED_HOST_NICE}), url, api_pid, paths, log,
                     seconds, backlog)
    finally:
        _renice(emulator_pid, 0)


def ingress_busy(size: Size) -> dict[str, object]:
    """Idle, then busy with the workers at their default priority, then busy as on a shared host (the
    workers and the stand-in upstream at nice 19)."""
    seconds = size.ingress_s * 3
    per_phase = int(RATE_RPS * seconds) + 10
    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
    with EmbeddedRedis() as server, emulator_process() as (upstream, emulator_pid), \
            tempfile.TemporaryDirectory() as tmp:
        PIDS.update(emulator=emulator_pid, redis=server.pid)
        log = Path(tmp) / "api.log"
        settings = settings_for(server.url, upstream, log_format="json", log_level="INFO")
        # Every POST goes to a conversation of its own, so every one sends a wake-up, idle or busy.
        convs = make_conversations(upstream, settings, 4 * per_phase + 800)
        groups = [convs[i * per_phase:(i + 1) * per_phase] for i in range(4)]
        paths = [[f"/v1/conversations/{c}/turns" for c in group] for group in groups]
        backlogs = convs[4 * per_phase:4 * per_phase + 400], convs[4 * per_phase + 400:]
        with api(settings, log_path=str(log)) as (url, api_pid):
            PIDS["api"] = api_pid
            asyncio.run(_load(url, paths[0][: int(RATE_RPS)], rate=RATE_RPS, seconds=1.0, connections=64))
            phases = {"idle": _phase(url, api_pid, paths[1], log, seconds),
                      "busy": _busy(settings, url, api_pid, paths[2], log, seconds, backlogs[0]),
                      "busy_nice": _shared_host(settings, url, api_pid, paths[3], log, seconds, backlogs[1],
                                                emulator_pid)}
    out: dict[str, object] = {"rate_rps": RATE_RPS, "seconds_per_phase": seconds}
    for name, phase in phases.items():
        server_ms, client = phase.pop("server_ms"), phase.pop("client")
        assert isinstance(server_ms, list) and isinstance(client, dict)
        out |= {f"posts_{name}": len(server_ms), f"{name}_p50_ms": round(percentile(server_ms, 50), 2),
                f"{name}_p99_ms": round(percentile(server_ms, 99), 2),
                f"client_{name}_p99_ms": round(client["p99_ms"], 2), f"errors_{name}": client["errors"],
                **{f"{key}_{name}": value for key, value in phase.items()}}
    for name in ("busy", "busy_nice"):
        out[f"{name}_to_idle_p99"] = round(float(out[f"{name}_p99_ms"]) / float(out["idle_p99_ms"]), 2)
    return out | {"load_avg_1m_before": round(load_before, 2)}
