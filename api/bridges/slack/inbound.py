"""``POST /slack/events``: Slack's Events API through Bolt, each message to the bot enqueued as a turn.

Bolt checks the signature and its timestamp (``request_verification_enabled``), answers ``url_verification``
and drops the bot's own events. The listener runs before the answer (``process_before_response``): the 2xx
goes out once the turn is in Redis and announced to the relays, so a message Slack was told we have is never
lost, and a failure is a 5xx that Slack retries. Retries (``X-Slack-Retry-Num``, sometimes in parallel with
the first delivery) find the same turn through its idempotency key, the ``event_id``. The same app runs over
Socket Mode too (socket.py, ``parley slack-socket``), where the ack is the envelope sent back.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from parley.worker import metrics
from parley.worker.log import get_logger
from parley.worker.store.ingress import EnqueueStatus

from ...routes.conversations import get_or_create
from ..announce import announce
from .client import PLATFORM, web_client
from .decide import SlackTurn, slack_input, turn_for_event
from .files import download_images

if TYPE_CHECKING:
    from parley.worker.settings import Settings

    from ...deps import Services

log = get_logger(__name__)

PATH = "/slack/events"
RETRY_LATER = (EnqueueStatus.full, EnqueueStatus.overloaded)
"""Not accepted now, worth Slack's retry (a minute, then five, later): the listener raises, Bolt answers
500."""


class NotAccepted(RuntimeError):
    """The turn could not be enqueued now; the 5xx makes Slack deliver the event again later."""


def bot_identity(web: AsyncWebClient) -> Callable[[], Awaitable[AuthorizeResult]]:
    """Bolt's ``authorize``: the bot's user id and token, learnt once with ``auth.test``. Bolt's own
    single-workspace authorization answers 200 when auth.test fails, which would drop the event; here the
    failure is an error Bolt answers with a 500, and Slack retries the event. (A function, not a callable
    object: Bolt passes what it asks for by the parameters' names.)"""
    learnt: list[AuthorizeResult] = []

    async def authorize() -> AuthorizeResult:
        if not learnt:
            try:
                response = await web.auth_test()
            except SlackApiError as exc:
                raise NotAccepted(f"auth.test failed: {exc.response.get('error')}") from None
            learnt.append(AuthorizeResult.from_auth_test_response(bot_token=web.token,
                                                                  auth_test_response=response))
        return learnt[0]

    return authorize


async def turn_input(settings: Settings, turn: SlackTurn) -> str | list[dict[str, Any]]:
    """The turn's input, its images downloaded with the bot token (bounded: this runs before the ack)."""
    if not turn.files or settings.slack_bot_token is None:
        return slack_input(turn, {})
    images = await download_images(turn.files, token=settings.slack_bot_token.get_secret_value(),
                                    api_url=settings.slack_api_url)
    return slack_input(turn, images)


async def accept(services: Services, turn: SlackTurn, *, event_id: str | None) -> str | None:
    """Enqueue ``turn`` in its thread's conversation and announce it; its id, or None when it is not one
    (a thread parley does not follow, a conversation deleted meanwhile, a reused key)."""
    settings, ingress = services.settings, services.ingress
    tenant = settings.slack_tenant
    if turn.only_if_followed:
        conversation_id = await ingress.conversation_for_key(tenant, turn.key)
        if conversation_id is None:
            return None
    else:
        record, _ = await get_or_create(services, tenant=tenant, key=turn.key,
                                        metadata={"slack_team": turn.team, "slack_channel": turn.channel,
                                                  "slack_thread_ts": turn.thread_ts})
        conversation_id = record["id"]
    result = await ingress.enqueue(conversation_id=conversation_id, input=await turn_input(settings, turn),
                                   model=None,
                                   instructions=None, metadata=turn.metadata, idempotency_key=event_id,
                                   tenant=tenant)
    if result.status in RETRY_LATER:
        raise NotAccepted(f"turn not accepted: {result.status.value}")
    if result.status not in (EnqueueStatus.ok, EnqueueStatus.duplicate):
        log.warning("slack_event_not_enqueued", status=result.status.value, event_id=event_id)
        return None
    if result.need_wakeup:
        services.wake(conversation_id)
    if result.status is EnqueueStatus.ok:
        metrics.TURNS_ACCEPTED.inc()
    # A duplicate is announced again too: the first delivery may have died between enqueue and announce.
    await announce(ingress.client, ingress.keys, PLATFORM, turn_id=result.turn_id,
                   conversation_id=conversation_id)
    return result.turn_id


def build_bolt(settings: Settings, services: Callable[[], Services], *,
               socket_mode: bool = False) -> AsyncApp:
    """The Bolt app of both transports: ``POST /slack/events`` (mount) and Socket Mode (socket.py), so an
    event becomes a turn by the same listener either way. ``services`` is called per event: the API builds
    its services in its lifespan, after the routes are mounted."""
    if settings.slack_bot_token is None:
        # Bolt learns the bot's user id with it (auth.test, once): needed to tell the bot's own messages.
        raise ValueError("PARLEY_SLACK_BOT_TOKEN is not set")
    if settings.slack_signing_secret is None and not socket_mode:
        raise ValueError("PARLEY_SLACK_SIGNING_SECRET is not set")
    web = web_client(settings)
    # Socket Mode envelopes come over a websocket opened with the app-level token and are not signed (Bolt
    # skips the check for them), so that transport needs no signing secret.
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    bolt = AsyncApp(signing_secret=secret, client=web, authorize=bot_identity(web),
                    process_before_response=True, request_verification_enabled=not socket_mode)

    # Every event type, so that none is "unhandled" (a 404 Slack would retry); turn_for_event picks.
    @bolt.event(re.compile(".*"))
    async def on_event(body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext,
                       ack: AsyncAck) -> None:
        turn = turn_for_event(event, bot_user_id=context.bot_user_id, team_id=body.get("team_id"))
        if turn is not None:
            turn_id = await accept(services(), turn, event_id=body.get("event_id"))
            log.info("slack_event", event_id=body.get("event_id"), turn_id=turn_id)
        await ack()

    return bolt


def mount(app: FastAPI, settings: Settings) -> None:
    handler = AsyncSlackRequestHandler(build_bolt(settings, lambda: app.state.services))

    @app.post(PATH, include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)
