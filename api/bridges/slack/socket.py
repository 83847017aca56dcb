"""``parley slack-socket``: the Slack bridge over Socket Mode, to try it without a public URL (development).

Slack sends the events over a websocket this process opens (``apps.connections.open`` with the app-level
token, at ``PARLEY_SLACK_API_URL`` when set) instead of POSTing them to ``/slack/events``. They go through the
same Bolt app as the HTTP route (inbound.build_bolt), with the API's services built here: a turn is in Redis,
woken and announced to the relays before its envelope is acked, and an event that cannot be taken now is not
acked, so Slack delivers it again; a redelivery finds the same turn by its ``event_id``. The replies are
posted by ``parley slack-relay``, as with the HTTP route.
"""

from __future__ import annotations

import asyncio

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from parley.worker.log import get_logger
from parley.worker.settings import Settings

from ...deps import standalone_services
from .inbound import build_bolt

log = get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Stay connected until ``stop`` is set (or SIGTERM/SIGINT when none is given); slack_sdk's client
    reconnects by itself when Slack closes the socket (it does every few hours) or it drops."""
    assert settings.slack_app_token is not None
    if stop is None:
        import signal

        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with standalone_services(settings) as services:
        bolt = build_bolt(settings, lambda: services, socket_mode=True)
        # Bolt's own Web API client (the bot token, PARLEY_SLACK_API_URL) also opens the connection: the
        # app-level token is passed per call to apps.connections.open.
        handler = AsyncSocketModeHandler(bolt, app_token=settings.slack_app_token.get_secret_value())
        try:
            # The first URL asked for here, not inside connect(): there a refused token (invalid_auth,
            # not_allowed_token_type) is logged and retried forever; here it is a SlackApiError, the
            # command's exit 1.
            handler.client.wss_uri = await handler.client.issue_new_wss_url()
            await handler.connect_async()
        except BaseException:
            await handler.close_async()
            raise
        log.info("slack_socket_connected")
        try:
            await stop.wait()
        finally:
            await handler.close_async()
