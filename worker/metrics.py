"""Prometheus metrics. Counters and histograms are per process and multiprocess-safe (set
``PROMETHEUS_MULTIPROC_DIR`` for prefork workers or several uvicorn workers); the backlog gauges are read from
Redis, where the reaper keeps them (``Keys.stats``), so every scrape of any API process sees the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REQUEST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Finer at the low end: the ingress's target is milliseconds (its p99 ≤ 25 ms under load)."""

TURNS_ACCEPTED = Counter("parley_turns_accepted_total",
                         "Turns accepted by the ingress (duplicates excluded).")
TURNS_COMPLETED = Counter("parley_turns_completed_total", "Turns completed.")
TURNS_FAILED = Counter("parley_turns_failed_total", "Turns failed, by reason.", ["reason"])
TURNS_FOLDED = Counter("parley_turns_folded_total",
                       "Turns answered by another turn's reply (double texting), by how: merged (their "
                       "inputs went in a later turn's request; interrupted ones too), superseded (a newer "
                       "message replaced them); interrupted counts the running turns stopped.", ["how"])
TURNS_DEAD_LETTERED = Counter("parley_turns_dead_lettered_total", "Turns moved to the dead letters.")
RETRIES = Counter("parley_upstream_retries_total", "Upstream attempts retried, by cause.", ["cause"])
LEASE_RECOVERIES = Counter("parley_lease_recoveries_total",
                           "Turns resumed after their owner died or handed them back.")
WEBHOOKS_DELIVERED = Counter("parley_webhooks_delivered_total",
                             "Webhook deliveries a receiver acknowledged (2xx).")
WEBHOOK_FAILURES = Counter("parley_webhook_failures_total",
                           "Webhook attempts that failed and will be retried or dead-lettered, by reason.",
                           ["reason"])
WEBHOOKS_DEAD_LETTERED = Counter("parley_webhooks_dead_lettered_total",
                                 "Webhook deliveries past their retry budget, moved to the dead letters.")
TOOL_CALLS = Counter("parley_tool_calls_total",
                     "Server tool calls run, by tool and outcome (ok, error, timeout).", ["tool", "outcome"])
TOOL_SECONDS = Histogram("parley_tool_seconds", "Duration of one server tool call.", ["tool"],
                         buckets=LATENCY_BUCKETS_S)
TOOL_ROUNDS = Counter("parley_tool_rounds_total", "Upstream follow-up requests sent with tool outputs.")
QUEUE_SECONDS = Histogram("parley_turn_queue_seconds", "Time from acceptance to a turn's first start.",
                          buckets=LATENCY_BUCKETS_S)
# livesum: with several API processes sharing PROMETHEUS_MULTIPROC_DIR, the sum over the live ones.
LISTENERS = Gauge("parley_api_listeners", "Event streams and long-polls this API process serves now.",
                  multiprocess_mode="livesum")
UPSTREAM_SECONDS = Histogram("parley_upstream_seconds", "Duration of one upstream generation attempt.",
                             buckets=LATENCY_BUCKETS_S)

REQUEST_SECONDS = Histogram("parley_http_request_seconds",
                            "API request duration, by route template (unrouted: 404s and requests answered "
                            "before routing) and method.", ["route", "method"], buckets=REQUEST_BUCKETS_S)
WAKEUPS_SENT = Counter("parley_wakeups_sent_total", "Wake-ups the API published to the broker.")
WAKEUPS_DROPPED = Counter("parley_wakeups_dropped_total",
                          "Wake-ups the API did not publish (the reaper re-sends them), by reason: "
                          "queue_full, broker_error.", ["reason"])

BACKLOG_GAUGES = {
    "queued": ("parley_backlog_queued_turns", "Turns waiting in conversation inboxes."),
    "ready": ("parley_backlog_ready_conversations", "Conversations with work and no owner."),
    "inflight": ("parley_backlog_inflight_turns", "Turns being processed (or waiting to be resumed)."),
    "active": ("parley_active_conversations", "Conversations in the active index."),
    "dead_letters": ("parley_dead_letters", "Turns in the dead letters."),
    "updated_at": ("parley_backlog_updated_timestamp_seconds", "When the reaper last counted the backlog."),
}


class BacklogCollector(Collector):
    """Gauges from a snapshot of the backlog; ``parley_backlog_turns`` (queued + in flight) is the autoscaling
    signal."""

    def __init__(self, snapshot: Mapping[str, float]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for field, (name, doc) in BACKLOG_GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=float(self.snapshot.get(field, 0)))
        total = float(self.snapshot.get("queued", 0)) + float(self.snapshot.get("inflight", 0))
        yield GaugeMetricFamily("parley_backlog_turns", "Queued plus in-flight turns: scale workers on this.",
                                value=total)


def process_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class CircuitCollector(Collector):
    """``parley_upstream_circuit_open{model}`` from the shared state in Redis, the same on every API
    process."""

    def __init__(self, open_by_model: Mapping[str, bool]) -> None:
        self.open_by_model = open_by_model

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("parley_upstream_circuit_open", "1 while the shared upstream circuit of a "
                                   "model is open (workers wait instead of calling it).", labels=["model"])
        for model, is_open in self.open_by_model.items():
            family.add_metric([model], 1.0 if is_open else 0.0)
        yield family


def render(backlog: Mapping[str, float] | None = None, circuits: Mapping[str, bool] | None = None) -> bytes:
    body = generate_latest(process_registry())
    if backlog is not None or circuits is not None:
        registry = CollectorRegistry()
        if backlog is not None:
            registry.register(BacklogCollector(backlog))
        if circuits is not None:
            registry.register(CircuitCollector(circuits))
        body += generate_latest(registry)
    return body
