"""The chaos run (issue 4): many conversations, workers SIGKILLed and restarted, a Redis restart, upstream faults;
then every invariant counted. Used by tests/e2e/test_chaos.py (reduced size) and bench/chaos.py (full size)."""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import redis
from stack import start_beat, start_worker

from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.processes import stop
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys


@dataclass
class ChaosConfig:
    conversations: int = 500
    turns: int = 10
    workers: int = 3
    concurrency: int = 50
    kill_every_s: float = 2.0
    fault_period_s: float = 30.0
    p_error: float = 0.10
    p_drop: float = 0.02
    latency_ms: tuple[int, int] = (0, 200)
    settle_timeout_s: float = 60.0
    seed: int = 7


@dataclass
class ChaosReport:
    config: dict[str, object]
    accepted_turns: int = 0
    completed_turns: int = 0
    lost_turns: int = 0
    duplicated_user_items: int = 0
    duplicated_completed_events: int = 0
    reordered_conversations: int = 0
    overlapping_upstream_calls: int = 0
    locked_rejections: int = 0
    worker_kills: int = 0
    redis_restarts: int = 0
    post_retries: int = 0
    pool_errors: int = 0
    injected_faults: dict[str, int] = field(default_factory=dict)
    seconds_to_terminal_after_faults: float = 0.0
    total_seconds: float = 0.0
    stuck: list[dict[str, object]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (self.lost_turns == self.duplicated_user_items == self.duplicated_completed_events
                == self.reordered_conversations == self.overlapping_upstream_calls == self.pool_errors == 0)

    def table(self) -> str:
        rows = [(k, v) for k, v in asdict(self).items() if k != "config"]
        return "\n".join(["| measure | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows])


def _overlaps(emulator: EmulatorServer) -> int:
    """Responses on one conversation whose in-progress intervals overlap (the emulator's lock forbids it)."""
    by_conv: dict[str, list[tuple[float, float]]] = {}
    for r in emulator.store.snapshot_requests():
        if r.response_id and r.conversation_id:
            by_conv.setdefault(r.conversation_id, []).append((r.started_at, r.ended_at or float("inf")))
    count = 0
    for spans in by_conv.values():
        spans.sort()
        count += sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])
    return count


class _Chaos:
    def __init__(self, cfg: ChaosConfig, settings: Settings, server: EmbeddedRedis, logdir: Path) -> None:
        self.cfg, self.settings, self.server, self.logdir = cfg, settings, server, logdir
        self.rng = random.Random(cfg.seed)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.kills = self.restarts = self.generation = 0
        self.stop = threading.Event()

    def start_worker(self) -> subprocess.Popen[bytes]:
        self.generation += 1
        name = f"chaos{self.generation}"
        log = self.logdir / f"{name}.log"
        return start_worker(self.settings, name, concurrency=self.cfg.concurrency,
                            extra_env={"PYTHONUNBUFFERED": "1"}, log_path=str(log))

    def run(self) -> None:
        while not self.stop.wait(self.cfg.kill_every_s):
            victim = self.rng.randrange(len(self.workers))
            stop(self.workers[victim], sig=9)
            self.kills += 1
            self.workers[victim] = self.start_worker()


def run_chaos(cfg: ChaosConfig, emulator: EmulatorServer) -> ChaosReport:
    from parley.api.main import create_app

    report = ChaosReport(config=asdict(cfg))
    began = time.monotonic()
    emulator.emulator.reset()
    ec = emulator.config
    ec.latency_ms, ec.seed = cfg.latency_ms, cfg.seed
    emulator.emulator.faults.reseed(cfg.seed)
    logdir = Path(tempfile.mkdtemp(prefix="parley-chaos-"))
    with EmbeddedRedis(appendonly=True) as server:
        settings = Settings(_env_file=None, redis_url=server.url, openai_base_url=emulator.base_url,
                            lease_ttl_ms=3000, heartbeat_interval_ms=1000, reaper_interval_s=1.0, hint_retry_s=2.0,
                            backoff_base_s=0.05, backoff_max_s=1.0, turn_deadline_s=900, circuit_breaker=True,
                            log_level="WARNING",
                            worker_concurrency=cfg.concurrency, mailbox_cap=cfg.turns + 1,
                            worker_metrics_port=0)
        chaos = _Chaos(cfg, settings, server, logdir)
        chaos.workers = [chaos.start_worker() for _ in range(cfg.workers)]
        with BackgroundServer(create_app(settings)) as api, start_beat(settings), \
                httpx.Client(base_url=api.url, timeout=10) as http:
            convs = [http.post("/v1/conversations", json={}).json()["id"] for _ in range(cfg.conversations)]
            ec.p_429 = ec.p_500 = ec.p_503 = cfg.p_error / 3
            ec.p_drop = cfg.p_drop
            chaos_thread = threading.Thread(target=chaos.run, daemon=True)
            chaos_thread.start()
            posting_began = time.monotonic()
            with ThreadPoolExecutor(1) as poster:
                posted = poster.submit(_post_all, http, convs, cfg)
                # From this (the main) thread: the embedded server is tied to the thread that starts it.
                time.sleep(cfg.fault_period_s / 2)
                server.restart()
                chaos.restarts += 1
                accepted, report.post_retries = posted.result()
            time.sleep(max(0.0, cfg.fault_period_s - (time.monotonic() - posting_began)))
            chaos.stop.set()
            chaos_thread.join()
            ec.p_429 = ec.p_500 = ec.p_503 = ec.p_drop = 0.0
            faults_stopped = time.monotonic()
            client = redis.Redis.from_url(server.url, decode_responses=True)
            keys = Keys()
            all_turns = [(conv, t) for conv in convs for t in accepted[conv]]
            deadline = faults_stopped + cfg.settle_timeout_s
            pending = all_turns
            while pending and time.monotonic() < deadline:
                pipe = client.pipeline(transaction=False)
                for conv, t in pending:
                    pipe.hget(keys.turn(conv, t), "status")
                pending = [p for p, s in zip(pending, pipe.execute(), strict=True)
                           if s not in ("completed", "failed", "cancelled")]
                time.sleep(0.2)
            report.seconds_to_terminal_after_faults = round(time.monotonic() - faults_stopped, 1)
            _count(report, client, keys, emulator, convs, accepted, cfg)
            report.worker_kills, report.redis_restarts = chaos.kills, chaos.restarts
        for worker in chaos.workers:
            stop(worker)
    report.pool_errors = sum(log.read_text(errors="replace").count(marker) for log in logdir.glob("*.log")
                             for marker in ("MaxConnectionsError", "Too many connections"))
    report.injected_faults = dict(Counter(r.fault for r in emulator.store.snapshot_requests() if r.fault))
    report.total_seconds = round(time.monotonic() - began, 1)
    return report


def _post_all(http: httpx.Client, convs: list[str], cfg: ChaosConfig) -> tuple[dict[str, list[str]], int]:
    accepted: dict[str, list[str]] = {conv: [] for conv in convs}
    retries = Counter[str]()

    def post(conv: str, i: int) -> None:
        body = {"input": f"{conv[-8:]} turn {i + 1}", "idempotency_key": f"{conv}:{i}"}
        while True:  # a bot retries on 5xx/429 with the same idempotency key
            try:
                response = http.post(f"/v1/conversations/{conv}/turns", json=body)
                if response.status_code in (200, 202):
                    accepted[conv].append(response.json()["id"])
                    return
            except httpx.HTTPError:
                pass
            retries["n"] += 1
            time.sleep(0.2)

    round_s = cfg.fault_period_s * 0.8 / cfg.turns  # spread the turns over the faults, not before them

    def post_group(group: list[str]) -> None:
        for i in range(cfg.turns):
            round_began = time.monotonic()
            for conv in group:
                post(conv, i)
            time.sleep(max(0.0, round_s - (time.monotonic() - round_began)))

    groups = [convs[i::8] for i in range(8)]
    with ThreadPoolExecutor(len(groups)) as pool:
        list(pool.map(post_group, groups))
    return accepted, retries["n"]


def _count(report: ChaosReport, client: redis.Redis, keys: Keys, emulator: EmulatorServer, convs: list[str],
           accepted: dict[str, list[str]], cfg: ChaosConfig) -> None:
    for conv in convs:
        turns = accepted[conv]
        report.accepted_turns += len(turns)
        statuses = [client.hget(keys.turn(conv, t), "status") for t in turns]
        report.completed_turns += statuses.count("completed")
        report.lost_turns += len(turns) - statuses.count("completed")
        for t, st in zip(turns, statuses, strict=True):
            if st != "completed" and len(report.stuck) < 5:
                report.stuck.append({"turn": t, "status": st, "turn_record": client.hgetall(keys.turn(conv, t)),
                                     "lease": client.pttl(keys.lease(conv)), "inflight": client.get(keys.inflight(conv)),
                                     "inbox": client.lrange(keys.inbox(conv), 0, -1),
                                     "state": client.hgetall(keys.state(conv)),
                                     "active": client.zscore(keys.active, conv)})
        stored = emulator.store.snapshot_items(conv)
        users = ["".join(p["text"] for p in i["content"]) for i in stored if i["role"] == "user"]
        expected = [f"{conv[-8:]} turn {i + 1}" for i in range(cfg.turns)]
        report.duplicated_user_items += sum((Counter(users) - Counter(expected)).values())
        roles = [i["role"] for i in stored]
        if users != expected[:len(users)] or roles != ["user", "assistant"] * (len(roles) // 2):
            report.reordered_conversations += 1
        events = [json.loads(f["data"]) for _, f in client.xrange(keys.events(conv))]
        completed_ids = [e["id"] for e in events if e["type"] == "turn.completed"]
        report.duplicated_completed_events += len(completed_ids) - len(set(completed_ids))
    report.overlapping_upstream_calls = _overlaps(emulator)
    report.locked_rejections = emulator.store.overlap_count()
