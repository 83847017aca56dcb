"""parley's benchmark suite (issue 6): every scenario, each against a baseline measured in the same run, as
ratios. Writes bench/report.md, bench/report.json and bench/latency.png.

    python bench/run.py            # full size, about 8 minutes on 2 cores
    python bench/run.py --quick    # small sizes, a smoke run
    python bench/run.py --only slack   # some scenarios: bench/report-only.md and report-only.json instead
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
import traceback
from pathlib import Path

import busy_ingress
import harness  # noqa: F401  (puts the project on sys.path)
import scaling
import scenarios
import slack_bridge
import tools_bench
from harness import repeat

HERE = Path(__file__).resolve().parent

TARGETS = {
    "ordered_ratio": 0.7, "io_ratio_to_direct": 0.8, "io_nonstream_per_s": 300.0, "overhead_p50_ms": 3.0,
    "overhead_p99_ms": 20.0, "ingress_half_p99_ms": 10.0, "ingress_ratio": 0.6, "fairness_p99_ms": 50.0,
    "redis_bytes_per_turn": 1024.0, "worker_rss_mb": 300.0, "webhook_hang_ratio": 0.95, "scaling_ratio": 1.6,
    "ingress_busy_p99_ms": 25.0, "ingress_busy_ratio": 3.0, "tool_round_cpu_ms": 1.5,
    "slack_ack_p99_ms": 100.0, "slack_relay_p99_ms": 50.0,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per scenario (default 2, quick 1)")
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    size = scenarios.Size.quick() if args.quick else scenarios.Size.full()
    # 2: the run stays near ten minutes; each figure's spread is in the report, and --only with --repeats 3
    # (or more) settles one scenario.
    repeats = args.repeats or (1 if args.quick else 2)
    only = set(filter(None, args.only.split(",")))
    began = time.monotonic()
    results: dict[str, object] = {"size": "quick" if args.quick else "full", "repeats": repeats,
                                  "machine": f"{platform.machine()} {platform.python_version()}",
                                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    failed: dict[str, str] = {}

    def run(name: str, fn, *a, **kw):  # type: ignore[no-untyped-def]
        if only and name not in only:
            return
        t = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            results[name] = fn(*a, **kw)
        except Exception as exc:  # noqa: BLE001 - one scenario's failure must not lose the others' figures
            traceback.print_exc()
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
            return
        print(json.dumps(results[name], default=str), f"({time.monotonic() - t:.0f} s)", flush=True)

    run("ingress", scenarios.ingress, size)
    run("ingress_busy", repeat, repeats, lambda: _numeric(busy_ingress.ingress_busy(size)))
    run("ordered", repeat, repeats, lambda: scenarios.ordered(size, stream=False))
    run("io_nonstream", repeat, repeats, lambda: _numeric(scenarios.io_concurrency(size, stream=False)))
    run("io_stream", repeat, max(1, repeats - 1), lambda: _numeric(scenarios.io_concurrency(size, stream=True)))
    ordered_rate = float(results.get("ordered", {}).get("parley_turns_per_s", 200))  # type: ignore[union-attr]
    run("overhead", repeat, repeats, lambda: _numeric(scenarios.overhead(size, rate=max(20.0, ordered_rate / 2))))
    run("fairness", repeat, repeats, lambda: _numeric(scenarios.fairness(size)))
    run("memory", scenarios.memory, size)
    run("worker_rss", scenarios.worker_rss, size)
    run("webhooks", repeat, repeats, lambda: _numeric(scenarios.webhooks(size)))
    run("scaling", repeat, repeats, lambda: _numeric(scaling.scaling(size)))
    run("tools", repeat, repeats, lambda: _numeric(tools_bench.tools(size)))
    # Once, not repeated: about a minute (idle, a trickle, 2 × 10 s busy), less with --quick.
    run("slack", slack_bridge.slack, slack_bridge.BUSY_S / (3 if args.quick else 1))
    results["seconds"] = round(time.monotonic() - began)
    if failed:
        results["failed"] = failed
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A run of some scenarios leaves the full suite's report alone.
    stem = "report-only" if only else "report"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(render(results))
    if not only:
        plot(results, out / "latency.png")
    print(render(results))
    return 1 if failed else 0


def _numeric(row: dict[str, object]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, int | float)}


def _get(results: dict[str, object], scenario: str, key: str) -> float | None:
    row = results.get(scenario)
    if not isinstance(row, dict) or key not in row:
        return None
    return float(row[key])


# (label, scenario, key, target, bound, higher is better, note made from the results)
ROWS: list[tuple[str, str, str, str, float | None, bool, str]] = [
    ("(1) ingress max rps ÷ bare endpoint", "ingress", "max_rps_ratio", "≥ 0.6", TARGETS["ingress_ratio"], True,
     "parley {ingress.parley_max_rps} rps, bare LPUSH {ingress.bare_max_rps} rps"),
    ("(1) ingress p99 at 50 % of max (ms)", "ingress", "parley_half_p99_ms", "≤ 10", TARGETS["ingress_half_p99_ms"],
     False, "bare endpoint p99 {ingress.bare_half_p99_ms} ms"),
    ("(1) POST …/turns p99 while 2 workers drain (ms)", "ingress_busy", "busy_p99_ms", "≤ 25",
     TARGETS["ingress_busy_p99_ms"], False,
     "server side (request log), open loop at {ingress_busy.rate_rps} rps; p50 {ingress_busy.busy_p50_ms} "
     "ms, client p99 {ingress_busy.client_busy_p99_ms} ms; workers at {ingress_busy.workers_cpu_cores_busy} "
     "cores; the machine waited for a CPU {ingress_busy.cpu_pressure_busy} of the time, the API's loop "
     "{ingress_busy.api_cpu_wait_busy}"),
    ("(1) POST …/turns p99 busy ÷ idle", "ingress_busy", "busy_to_idle_p99", "≤ 3",
     TARGETS["ingress_busy_ratio"], False,
     "idle p50 {ingress_busy.idle_p50_ms} ms, p99 {ingress_busy.idle_p99_ms} ms"),
    ("(1) same, workers at PARLEY_WORKER_NICE=19, upstream stand-in at nice 19 (ms)", "ingress_busy",
     "busy_nice_p99_ms", "≤ 25",
     TARGETS["ingress_busy_p99_ms"], False,
     "p50 {ingress_busy.busy_nice_p50_ms} ms, client p99 {ingress_busy.client_busy_nice_p99_ms} ms; workers "
     "at {ingress_busy.workers_cpu_cores_busy_nice} cores; the API's loop waited for a CPU "
     "{ingress_busy.api_cpu_wait_busy_nice} of the time"),
    ("(1) same, busy ÷ idle", "ingress_busy", "busy_nice_to_idle_p99", "≤ 3",
     TARGETS["ingress_busy_ratio"], False, ""),
    ("(2) ordered turns/s ÷ naive Celery", "ordered", "ratio", "≥ 0.7", TARGETS["ordered_ratio"], True,
     "parley {ordered.parley_turns_per_s}/s, naive {ordered.naive_turns_per_s}/s; worker CPU "
     "{ordered.parley_worker_cpu_ms_per_turn} vs {ordered.naive_worker_cpu_ms_per_turn} ms/turn"),
    ("(3) non-streamed, 1 s latency: ÷ direct SDK", "io_nonstream", "ratio_to_direct", "≥ 0.8",
     TARGETS["io_ratio_to_direct"], True,
     "direct {io_nonstream.direct_sdk_per_s}/s (plain `responses.create`, one client), ideal "
     "{io_nonstream.ideal_per_s}/s"),
    ("(3) non-streamed turns/s per worker process", "io_nonstream", "parley_per_s", "≥ 300",
     TARGETS["io_nonstream_per_s"], True, "naive threads {io_nonstream.naive_threads_per_s}/s, prefork c=2 "
     "{io_nonstream.naive_prefork_per_s}/s; peak in flight {io_nonstream.parley_peak_inflight}"),
    ("(3) streamed, 1 s latency: ÷ direct SDK", "io_stream", "ratio_to_direct", "≥ 0.8",
     TARGETS["io_ratio_to_direct"], True, "parley {io_stream.parley_per_s}/s, direct {io_stream.direct_sdk_per_s}/s"),
    ("(4) accept → upstream start p50 (ms)", "overhead", "accept_to_upstream_p50_ms", "≤ 3",
     TARGETS["overhead_p50_ms"], False, "at {overhead.offered_rps} turns/s"),
    ("(4) accept → upstream start p99 (ms)", "overhead", "accept_to_upstream_p99_ms", "≤ 20",
     TARGETS["overhead_p99_ms"], False, ""),
    ("(4) upstream end → subscriber p50 (ms)", "overhead", "upstream_to_subscriber_p50_ms", "≤ 3",
     TARGETS["overhead_p50_ms"], False, ""),
    ("(4) upstream end → subscriber p99 (ms)", "overhead", "upstream_to_subscriber_p99_ms", "≤ 20",
     TARGETS["overhead_p99_ms"], False, ""),
    ("(5) new conversations' first turn p99 (ms)", "fairness", "first_turn_p99_ms", "≤ 50",
     TARGETS["fairness_p99_ms"], False, "p50 {fairness.first_turn_p50_ms} ms, behind a {fairness.backlog}-turn backlog "
     "({fairness.backlog_left_when_new_done} still queued when the new ones were done)"),
    ("(6) Redis bytes per queued turn", "memory", "redis_bytes_per_turn", "≤ 1024", TARGETS["redis_bytes_per_turn"],
     False, "MEMORY USAGE of a turn's hash: {memory.memory_usage_turn_keys_bytes} B"),
    ("(6) worker RSS at peak in flight (MB)", "worker_rss", "worker_peak_rss_mb", "≤ 300", TARGETS["worker_rss_mb"],
     False, "{worker_rss.peak_inflight} turns in flight"),
    ("(6) API RSS after the ingress runs (MB)", "ingress", "api_rss_mb", "–", None, False, ""),
    ("(7) turns/s with a hanging webhook ÷ none", "webhooks", "ratio", "≥ 0.95",
     TARGETS["webhook_hang_ratio"], True, "no webhook {webhooks.no_webhook_turns_per_s}/s, receiver that never "
     "answers {webhooks.hanging_webhook_turns_per_s}/s; dispatcher CPU {webhooks.dispatcher_cpu_ms_per_turn} "
     "ms/turn"),
    ("(10) extra worker CPU per server-tool round (ms)", "tools", "extra_cpu_ms_per_round", "≤ 1.5",
     TARGETS["tool_round_cpu_ms"], False, "plain turn {tools.plain_cpu_ms_per_turn} ms, with one tool round "
     "{tools.tool_cpu_ms_per_turn} ms (× {tools.cpu_ratio})"),
    ("(10) one bare SDK request's CPU, 100 threads (ms)", "tools", "bare_request_cpu_ms", "–", None, False,
     "the request a tool round must add: non-streamed `responses.create` on a conversation, the worker's "
     "clients, in a process of its own, same emulator setup"),
    ("(10) extra CPU per round − that request (ms)", "tools", "extra_minus_request_ms", "–", None, False,
     "parley's own cost of a round (tool run, records, events, thread handoff); extra ÷ request "
     "× {tools.extra_to_request_ratio}"),
    ("(9) ordered turns/s, 2 worker processes ÷ 1", "scaling", "ratio", "≥ 1.6", TARGETS["scaling_ratio"], True,
     "one process {scaling.one_process_turns_per_s}/s, two {scaling.two_processes_turns_per_s}/s "
     "({scaling.turns} turns, zero-latency upstream); per turn: workers {scaling.worker_cpu_ms_per_turn} ms CPU, "
     "emulator + Redis {scaling.emulator_redis_cpu_ms_per_turn} ms; cores busy: {scaling.cores_used_one} with "
     "one, {scaling.cores_used_two} with two"),
    ("(9) same, the ceiling two cores allow", "scaling", "ceiling", "–", None, True,
     "2 cores ÷ (worker + emulator + Redis CPU per turn) ÷ the one-process rate"),
    ("(Slack) event ack p99, 50 events/s, 2 workers draining (ms)", "slack", "ack_busy_p99_ms", "≤ 100",
     TARGETS["slack_ack_p99_ms"], False,
     "server side (request log), signed app_mentions, each a new thread, the workers draining their turns; "
     "p50 {slack.ack_busy_p50_ms} ms, client p99 {slack.client_ack_busy_p99_ms} ms; baseline, no worker "
     "running: p50 {slack.ack_idle_p50_ms} ms, p99 {slack.ack_idle_p99_ms} ms "
     "(× {slack.ack_busy_to_idle_p99}); "
     "workers at {slack.workers_cpu_cores_busy} cores, the whole machine at {slack.machine_cpu_cores_busy} "
     "(idle phase {slack.machine_cpu_cores_idle}); the machine waited for a CPU {slack.cpu_pressure_busy} of "
     "the time, the API's loop {slack.api_cpu_wait_busy}"),
    ("(Slack) same, workers at full speed on a backlog (ms)", "slack", "ack_saturated_p99_ms", "≤ 100",
     TARGETS["slack_ack_p99_ms"], False,
     "p50 {slack.ack_saturated_p50_ms} ms, client p99 {slack.client_ack_saturated_p99_ms} ms (× "
     "{slack.ack_saturated_to_idle_p99} idle); cores: workers {slack.workers_cpu_cores_saturated}, emulator "
     "{slack.emulator_cpu_cores_saturated}, Redis {slack.redis_cpu_cores_saturated}, API "
     "{slack.api_cpu_cores_saturated}, machine {slack.machine_cpu_cores_saturated}; the API's loop waited for a "
     "CPU {slack.api_cpu_wait_saturated} of the time; a new thread's ack includes the upstream's "
     "conversations.create (the emulator, which the workers load too)"),
    ("(Slack) relay delay turn.completed → chat.stopStream p99 (ms)", "slack", "relay_busy_p99_ms", "≤ 50",
     TARGETS["slack_relay_p99_ms"], False,
     "p50 {slack.relay_busy_p50_ms} ms over {slack.relay_samples_busy} of {slack.turns_busy} turns, of which "
     "turn.completed → chat.startStream p50 {slack.relay_to_start_busy_p50_ms} ms (the relay follows its turns "
     "through one blocking XREAD, 20 ms blocks; zero-latency upstream); baseline, a trickle of 4 events/s: p50 "
     "{slack.relay_quiet_p50_ms} ms, max {slack.relay_quiet_max_ms} ms"),
    ("(Slack) same, workers at full speed on a backlog (ms)", "slack", "relay_saturated_p99_ms", "≤ 50",
     TARGETS["slack_relay_p99_ms"], False,
     "p50 {slack.relay_saturated_p50_ms} ms over {slack.relay_samples_saturated} of {slack.turns_saturated} "
     "turns; to chat.startStream p50 {slack.relay_to_start_saturated_p50_ms} ms"),
]


def render(results: dict[str, object]) -> str:
    def fill(note: str) -> str:
        for name in re.findall(r"\{([a-z_]+\.[a-z_0-9]+)\}", note):
            scenario, key = name.split(".")
            value = _get(results, scenario, key)
            note = note.replace("{" + name + "}", "–" if value is None else f"{value:g}")
        return note

    table = ["| measure | value | target | verdict | baseline / note |", "|---|---:|---|---|---|"]
    for label, scenario, key, target, bound, higher, note in ROWS:
        value = _get(results, scenario, key)
        if value is None or bound is None:
            verdict = "–"
        else:
            verdict = "met" if (value >= bound if higher else value <= bound) else "**missed**"
        shown = "–" if value is None else f"{value:g}"
        table.append(f"| {label} | {shown} | {target} | {verdict} | {fill(note)} |")
    head = [f"# parley benchmark ({results['size']} size, {results['repeats']} repeats, {results['date']})", "",
            "Every process on one 2-core machine over loopback; figures are medians, ratios are against a "
            "baseline measured in the same run. Raw numbers with spreads: report.json.", ""]
    ingress = results.get("ingress")
    sweep = ingress.get("parley_sweep", []) if isinstance(ingress, dict) else []
    sweep_rows = ["", "Ingress latency against offered load (open loop):", "",
                  "| offered rps | achieved rps | p50 ms | p99 ms | errors |", "|---:|---:|---:|---:|---:|"]
    sweep_rows += [f"| {r['offered_rps']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {int(r['errors'])} |"
                   for r in sweep]
    failed = results.get("failed") or {}
    lines = ["", "Scenarios that failed (their rows show –): " + "; ".join(
        f"{name}: {why}" for name, why in failed.items())] if isinstance(failed, dict) and failed else []
    return "\n".join(head + table + sweep_rows + lines) + f"\n\nTotal time: {results.get('seconds')} s.\n"


def plot(results: dict[str, object], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return
    ingress = results.get("ingress")
    if not isinstance(ingress, dict) or not ingress.get("parley_sweep"):
        return
    sweep = ingress["parley_sweep"]
    fig, ax = plt.subplots(figsize=(7, 4))
    offered = [r["offered_rps"] for r in sweep]
    ax.plot(offered, [r["p50_ms"] for r in sweep], marker="o", label="p50")
    ax.plot(offered, [r["p99_ms"] for r in sweep], marker="o", label="p99")
    ax.set_xlabel("offered load (turns accepted per second)")
    ax.set_ylabel("ingress latency (ms)")
    ax.set_title("parley ingress: latency against offered load")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
