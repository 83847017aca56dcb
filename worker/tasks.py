"""Thin Celery tasks: bind log context, call the drainer or the reaper."""

from __future__ import annotations

import gc

import structlog
from celery import shared_task
from celery.signals import beat_init, worker_init, worker_process_init, worker_ready, worker_shutting_down
from prometheus_client import start_http_server

from . import metrics
from .celery_app import DRAIN_TASK, QUEUE, REAP_TASK, broker_url
from .log import configure_logging, get_logger, redact_url, upstream_description
from .run.priority import lower_priority
from .run.reaper import reap
from .run.runtime import get_runtime
from .run.upstream import warm_up
from .settings import get_settings

log = get_logger(__name__)
_priority: list[str] = []


@worker_init.connect
def _lower_priority(**_: object) -> None:
    # Before the pool and the runtime start their threads, so that every one of them inherits it.
    _priority[:] = lower_priority(get_settings().worker_nice)


@worker_process_init.connect
def _prepare_child(**_: object) -> None:
    configure_logging(get_settings())
    get_runtime()
    warm_up()
    _settle_memory()


def _settle_memory() -> None:
    # The SDK's types and clients are built and will live as long as the process: take them out of the
    # cyclic GC's sight (gc.freeze), and collect less often, so collections stay short (overhead p99).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


GC_THRESHOLDS = (50_000, 20, 20)


@worker_ready.connect
def _prepare(**_: object) -> None:
    # The threads and solo pools run tasks in this process: build clients before the first wake-up arrives.
    get_runtime()
    warm_up()
    _settle_memory()
    settings = get_settings()
    log.info("worker_started", queue=QUEUE, pool=settings.worker_pool,
             concurrency=settings.worker_concurrency,
             redis=redact_url(settings.redis_url), broker=redact_url(broker_url(settings)),
             upstream=upstream_description(settings), metrics_port=settings.worker_metrics_port or None,
             metrics_address=settings.worker_metrics_address, priority=", ".join(_priority) or None)
    port = settings.worker_metrics_port
    if port:
        # In the main process: with PROMETHEUS_MULTIPROC_DIR it also serves what prefork children counted.
        try:
            start_http_server(port, addr=settings.worker_metrics_address, registry=metrics.process_registry())
        except OSError as exc:
            log.warning("metrics_port_unavailable", port=port, error=str(exc))


configure_logging(get_settings())


@beat_init.connect
def _beat_started(**_: object) -> None:
    settings = get_settings()
    log.info("beat_started", task=REAP_TASK, every_s=settings.reaper_interval_s,
             redis=redact_url(settings.redis_url), broker=redact_url(broker_url(settings)))


@worker_shutting_down.connect
def _shutting_down(**_: object) -> None:
    # Stop taking turns now; running ones get the grace period, then are handed back (worker/run/shutdown.py).
    runtime = get_runtime()
    runtime.shutdown.request(runtime.settings.shutdown_grace_s)
    log.info("worker_shutting_down", grace_s=runtime.settings.shutdown_grace_s)


@shared_task(name=DRAIN_TASK, bind=True)
def drain(self: object, conversation_id: str) -> int:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(conversation_id=conversation_id,
                                           task_id=getattr(getattr(self, "request", None), "id", None))
    result = get_runtime().drainer.drain(conversation_id)
    return result.turns


@shared_task(name=REAP_TASK)
def reap_task() -> int:
    runtime = get_runtime()
    result = reap(runtime.mailbox, runtime.wake)
    if result.woken:
        log.info("reaper_woke", woken=result.woken, scanned=result.scanned)
    return result.woken
