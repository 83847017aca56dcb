"""``POST /discord/interactions``: Discord's slash commands, each request's Ed25519 signature checked, the
``/ask`` command made a turn of the channel's conversation and answered at once with a deferred response
(Discord shows "thinking…" until the relay edits the reply in)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from parley.worker import metrics
from parley.worker.log import get_logger
from parley.worker.store.ingress import EnqueueStatus

from ...deps import Services
from ...errors import ApiError
from ..announce import announce
from ..conversations import get_or_create
from .decide import (
    DEFERRED_CHANNEL_MESSAGE,
    EPHEMERAL,
    PING,
    PONG,
    DiscordTurn,
    MessageTurn,
    turn_for_interaction,
    unknown_command_answer,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from parley.worker.settings import Settings

log = get_logger(__name__)

PLATFORM = "discord"
TOKEN_TTL_S = 900
"""An interaction token is valid for 15 minutes from the interaction: kept no longer."""
CREATE_BUDGET_S = 2.0
"""Of Discord's 3 seconds for the first answer, what a channel's first command may spend on making its
conversation (an upstream call); the rest is for the enqueue and the answer itself."""

_creating: set[asyncio.Task[str]] = set()
"""Conversation creations that outlived their budget, held so they finish (and are not collected)."""


async def _conversation(services: Services, turn: DiscordTurn | MessageTurn) -> str | None:
    """The channel's conversation, or ``None`` if making it takes longer than the budget. The creation is
    not cancelled then (a create cut between its upstream call and its record would leave a half-made key):
    it goes on, and the user's next command finds the conversation."""
    task = asyncio.ensure_future(get_or_create(
        services, tenant=services.settings.discord_tenant, key=turn.key,
        metadata={"platform": PLATFORM, "channel_id": turn.channel_id}))
    try:
        return await asyncio.wait_for(asyncio.shield(task), CREATE_BUDGET_S)
    except TimeoutError:
        _creating.add(task)
        task.add_done_callback(_finished)
        log.warning("discord_conversation_slow", key=turn.key, budget_s=CREATE_BUDGET_S)
        return None


def _finished(task: asyncio.Task[str]) -> None:
    _creating.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("discord_conversation_failed", error=type(exc).__name__)


def verify(key: VerifyKey, *, signature: str | None, timestamp: str | None, body: bytes) -> bool:
    """Discord's check: the Ed25519 signature (hex) of ``timestamp + body`` under the app's public key."""
    if not signature or not timestamp:
        return False
    try:
        key.verify(timestamp.encode() + body, bytes.fromhex(signature))
    except (BadSignatureError, ValueError):  # ValueError: not hex, or not 64 bytes
        return False
    return True


def _ephemeral(content: str) -> JSONResponse:
    return JSONResponse({"type": 4, "data": {"content": content, "flags": EPHEMERAL}})


async def accept(services: Services, turn: DiscordTurn | MessageTurn) -> str | None:
    """Enqueue the turn (the interaction or message id is its idempotency key, so Discord's retry or a
    redelivered gateway event is the same turn), keep its token (a slash command's) for the relay and
    announce it; ``None`` when it was accepted, else what to tell the
    user."""
    settings = services.settings
    if len(turn.text) > settings.max_input_chars:
        return f"That is longer than {settings.max_input_chars} characters."
    tenant = settings.discord_tenant
    try:
        conversation_id = await _conversation(services, turn)
    except ApiError as exc:
        log.warning("discord_conversation_failed", key=turn.key, type=exc.type)
        return "The model provider is not answering right now; try again shortly."
    if conversation_id is None:
        return "Setting up this channel's conversation is taking a moment; ask again in a few seconds."
    ingress = services.ingress
    result = await ingress.enqueue(conversation_id=conversation_id, input=turn.input, model=None,
                                   instructions=None, metadata=turn.metadata,
                                   idempotency_key=turn.idempotency_key, tenant=tenant)
    if result.status not in (EnqueueStatus.ok, EnqueueStatus.duplicate):
        log.info("discord_turn_refused", conversation_id=conversation_id, status=result.status.value)
        return "The bot is busy with this channel; try again in a moment."
    if turn.token:
        # Before the announce, so the relay finds it; NX: a retried interaction keeps the first expiry,
        # which is the token's own.
        await ingress.client.set(ingress.keys.discord_interaction_token(conversation_id, result.turn_id),
                                 turn.token, ex=TOKEN_TTL_S, nx=True)
    await announce(ingress.client, ingress.keys, PLATFORM, turn_id=result.turn_id,
                   conversation_id=conversation_id)
    if result.need_wakeup:
        services.wake(conversation_id)
    if result.status is EnqueueStatus.ok:
        metrics.TURNS_ACCEPTED.inc()
    log.info("discord_turn_accepted", conversation_id=conversation_id, turn_id=result.turn_id,
             idempotency_key=turn.idempotency_key, duplicate=result.status is EnqueueStatus.duplicate)
    return None


def mount(app: FastAPI, settings: Settings) -> None:
    """Add ``POST /discord/interactions`` (the Interactions Endpoint URL of the developer portal)."""
    key = VerifyKey(bytes.fromhex(settings.discord_public_key or ""))
    command = settings.discord_command

    @app.post("/discord/interactions", include_in_schema=False)
    async def interactions(request: Request) -> Response:
        raw = await request.body()
        if not verify(key, signature=request.headers.get("x-signature-ed25519"),
                      timestamp=request.headers.get("x-signature-timestamp"), body=raw):
            # Discord sends bad signatures on purpose and drops an endpoint that accepts them.
            return JSONResponse({"error": "invalid request signature"}, status_code=401)
        try:
            body: dict[str, Any] = json.loads(raw)
        except ValueError:
            body = {}
        if not isinstance(body, dict) or not body:
            return JSONResponse({"error": "the body is not an interaction"}, status_code=400)
        if body.get("type") == PING:
            return JSONResponse({"type": PONG})
        turn = turn_for_interaction(body, command=command)
        if turn is None:
            return JSONResponse(unknown_command_answer(body, command=command))
        refused = await accept(request.app.state.services, turn)
        if refused is not None:
            return _ephemeral(refused)
        return JSONResponse({"type": DEFERRED_CHANNEL_MESSAGE})
