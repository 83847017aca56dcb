"""The ``parley webhooks run`` process: one :class:`Dispatcher` with its clients, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

import httpx
from prometheus_client import start_http_server

from ..log import get_logger
from ..settings import Settings
from ..store.connections import async_client
from .dispatcher import Dispatcher

log = get_logger(__name__)


def make_http(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.webhook_timeout_s, connect=min(5.0, settings.webhook_timeout_s))
    limits = httpx.Limits(max_connections=settings.webhook_concurrency,
                          max_keepalive_connections=settings.webhook_concurrency)
    # No redirects: the signed event goes only to the URL the conversation named.
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)


async def serve(settings: Settings, *, name: str | None = None) -> None:
    """Run a dispatcher until SIGTERM or SIGINT."""
    if settings.webhook_metrics_port:
        try:
            start_http_server(settings.webhook_metrics_port, addr=settings.webhook_metrics_address)
        except OSError as exc:  # another dispatcher on this host has it: deliveries matter more than metrics
            log.warning("metrics_port_unavailable", port=settings.webhook_metrics_port, error=str(exc))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = async_client(settings)
    async with make_http(settings) as http:
        try:
            await Dispatcher(settings, client, http, name=name).run(stop)
        finally:
            await client.aclose()
