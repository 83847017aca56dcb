"""The Celery app. Its messages are only wake-ups ("conversation X may have work"), so losing, duplicating or
reordering them is harmless: order and exactly-once live in Redis (design §2-§3). They go through
``PARLEY_BROKER_URL`` (RabbitMQ or another Redis) when it is set, else through the state's own Redis.

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
REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+socket", "sentinel"})


def broker_url(settings: Settings) -> str:
    if settings.broker_url is not None:
        return settings.broker_url.get_secret_value()
    return settings.redis_url_required if settings.redis_url else FALLBACK_BROKER


def is_redis(url: str) -> bool:
    return url.partition("://")[0] in REDIS_SCHEMES


BRPOP_TIMEOUT_S = 0.25


def transport_options(url: str, concurrency: int,
                      publish_timeout_s: float | None = None) -> dict[str, object]:
    """kombu's transport options for the broker at ``url``. With ``publish_timeout_s`` (a process that only
    publishes, the API), no socket operation waits longer: a broker that accepts connections and never answers
    would otherwise hold a publish forever (kombu's default is no timeout at all)."""
    if is_redis(url):
        # kombu's Redis pool defaults to 10 connections per channel; size it to the pool (research.md §9).
        # No ack emulation: kombu's unacked index built a redis client for every delivery and every ack, 43 %
        # of a busy worker's GIL time (py-spy). A wake-up lost with a killed worker is re-sent by the reaper;
        # on a warm shutdown kombu still puts the prefetched, unstarted ones back on the queue. (Both options,
        # and visibility_timeout, exist only for Redis; AMQP acks natively and redelivers on a lost channel.)
        # polling_interval is kombu's BRPOP timeout on Redis: a warm shutdown waits for the BRPOP in flight
        # (1 s by default) before the process can exit, on every restart and rollout; idle, a worker sends
        # four BRPOPs a second instead of one.
        options: dict[str, object] = {"max_connections": concurrency + 20, "ack_emulation": False,
                                      "polling_interval": BRPOP_TIMEOUT_S}
        if publish_timeout_s is not None:
            options |= {"socket_timeout": publish_timeout_s, "socket_connect_timeout": publish_timeout_s}
        return options
    if publish_timeout_s is not None:  # py-amqp: SO_RCVTIMEO / SO_SNDTIMEO on the socket
        return {"read_timeout": publish_timeout_s, "write_timeout": publish_timeout_s}
    return {}


def create_celery(settings: Settings, *, publish_timeout_s: float | None = None) -> Celery:
    """The app every parley process uses. ``publish_timeout_s`` makes a publisher's app, whose every
    publish gives up within a few of those (one reconnect, for a pooled connection that went stale)."""
    url = broker_url(settings)
    app = Celery("parley", broker=url, include=["parley.worker.tasks"])
    app.conf.update(
        task_default_queue=QUEUE,
        task_ignore_result=True,
        # Early ack: a wake-up lost with a dead worker is re-sent by the reaper, while a late ack would make
        # the broker redeliver it after visibility_timeout and pile duplicate wake-ups on long turns. (On
        # AMQP a late ack would also run into RabbitMQ's consumer_timeout on a turn held past 30 minutes.)
        task_acks_late=False,
        # Same on both brokers: AMQP's prefetch is the channel's QoS (multiplier x concurrency), Redis's is
        # how many messages a worker takes ahead.
        worker_prefetch_multiplier=4,
        worker_pool=settings.worker_pool,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        worker_send_task_events=settings.worker_send_task_events,
        task_send_sent_event=settings.worker_send_task_events,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(url, settings.worker_concurrency, publish_timeout_s),
        broker_pool_limit=settings.worker_concurrency + 20,
        worker_soft_shutdown_timeout=10.0,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        beat_schedule={
            "parley-reap": {"task": REAP_TASK, "schedule": timedelta(seconds=settings.reaper_interval_s)},
        },
    )
    if url.startswith("rediss://"):
        # On a rediss:// URL without ssl_cert_reqs kombu accepts any certificate, where redis-py (the API's
        # and the workers' own clients, on the same URL) verifies it: verify here too. The URL's own
        # ssl_cert_reqs and ssl_ca_certs still apply on top of this.
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if publish_timeout_s is not None:
        # AMQP's connect and handshake; with one retry and no wait before it, a publish to a broker that is
        # down takes at most about 2 x (connect + one socket timeout), instead of Celery's default policy
        # on top of kombu's unbounded sockets.
        app.conf.broker_connection_timeout = publish_timeout_s
        app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                              "interval_max": 0.2}
    return app


app = create_celery(get_settings())
quiet_periodic(REAP_TASK)
