"""The Celery app. Its messages are only wake-ups ("conversation X may have work"), so losing, duplicating or
reordering them is harmless: order and exactly-once live in Redis (design §2-§3).

Run a worker with ``celery -A parley.worker.celery_app worker``; pool and concurrency come from Settings.
"""

from __future__ import annotations

import ssl
from datetime import timedelta

from celery import Celery

from .log import quiet_periodic
from .settings import Settings, get_settings

DRAIN_TASK = "parley.drain"
REAP_TASK = "parley.reap"
QUEUE = "parley"
FALLBACK_BROKER = "redis://127.0.0.1:6379/0"


def create_celery(settings: Settings) -> Celery:
    broker = settings.redis_url_required if settings.redis_url else FALLBACK_BROKER
    app = Celery("parley", broker=broker, include=["parley.worker.tasks"])
    app.conf.update(
        task_default_queue=QUEUE,
        task_ignore_result=True,
        # Early ack: a wake-up lost with a dead worker is re-sent by the reaper, while a late ack would make
        # the broker redeliver it after visibility_timeout and pile duplicate wake-ups on long turns.
        task_acks_late=False,
        worker_prefetch_multiplier=4,
        worker_pool=settings.worker_pool,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        worker_send_task_events=settings.worker_send_task_events,
        task_send_sent_event=settings.worker_send_task_events,
        broker_connection_retry_on_startup=True,
        # kombu's Redis pool defaults to 10 connections per channel; size it to the pool (research.md §9).
        # No ack emulation: kombu's unacked index built a redis client for every delivery and every ack, 43 %
        # of a busy worker's GIL time (py-spy). A wake-up lost with a killed worker is re-sent by the reaper;
        # on a warm shutdown kombu still puts the prefetched, unstarted ones back on the queue.
        broker_transport_options={"max_connections": settings.worker_concurrency + 20,
                                  "ack_emulation": False},
        broker_pool_limit=settings.worker_concurrency + 20,
        worker_soft_shutdown_timeout=10.0,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        beat_schedule={
            "parley-reap": {"task": REAP_TASK, "schedule": timedelta(seconds=settings.reaper_interval_s)},
        },
    )
    if broker.startswith("rediss://"):
        # On a rediss:// URL without ssl_cert_reqs kombu accepts any certificate, where redis-py (the API's
        # and the workers' own clients, on the same URL) verifies it: verify here too. The URL's own
        # ssl_cert_reqs and ssl_ca_certs still apply on top of this.
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return app


app = create_celery(get_settings())
quiet_periodic(REAP_TASK)
