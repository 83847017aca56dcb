"""Server-Sent Events of a conversation or a turn, resumable with ``Last-Event-ID`` (the event's ``seq``), and
the long-poll wait for a turn's end."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse

from parley.worker.events.log import LoggedEvent, last_seq, replay
from parley.worker.events.models import terminal_event_of
from parley.worker.messages import Turn, TurnStatus

from ..auth import ConversationsRead, TurnsRead
from ..deps import Services, ServicesDep
from ..errors import ApiError, not_found
from ..fanout import Subscription
from ..path_ids import ConversationId, TurnId

router = APIRouter(tags=["events"])

PING_S = 15
IDLE_S = 1.0
"""How often a quiet stream checks whether its client has gone."""
MAX_WAIT_S = 60.0


MAX_SEQ = 2**63 - 1
"""Stream entry ids are ``<seq>-0`` with 64-bit parts; past this a seq cannot exist (and Redis would
refuse)."""


def _seq(value: str, param: str) -> int:
    # Digits only: int() would also take "1_0" (as 10), " 10" and "+10".
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_SEQ:
        raise ApiError(400, "invalid_request",
                       f"{param} must be an event seq: digits only, at most {MAX_SEQ}.", param=param)
    return int(value)


def _last_event_id(header: str | None, query: str | None) -> int:
    if header is not None:
        return _seq(header.strip(), "Last-Event-ID")
    return _seq(query, "after") if query is not None else 0


def _sse(event: LoggedEvent) -> dict[str, str]:
    return {"id": str(event.seq), "event": event.type, "data": event.payload}


@router.get("/v1/conversations/{conversation_id}/events")
async def conversation_events(
    conversation_id: ConversationId, request: Request, services: ServicesDep, principal: ConversationsRead,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[str | None, Query(max_length=19, pattern=r"^[0-9]+$")] = None,
) -> EventSourceResponse:
    start = _last_event_id(last_event_id, after)
    async with services.listeners.reading():
        owner = await services.ingress.owner(conversation_id)
    if owner is None or not principal.owns(owner):
        raise not_found("conversation", conversation_id)
    services.listeners.check()

    async def events() -> AsyncIterator[dict[str, str]]:
        async with services.listeners.subscribe(conversation_id, after_seq=start) as subscription:
            async for event in subscription.events(idle_s=IDLE_S):
                if event is not None:
                    yield _sse(event)
                elif await request.is_disconnected():
                    return

    return EventSourceResponse(events(), ping=PING_S)


async def _turn_or_404(services: Services, turn_id: str, tenant: str) -> Turn:
    turn = await services.ingress.get_turn(turn_id, tenant)
    if turn is None:
        raise not_found("turn", turn_id)
    return turn


@router.get("/v1/turns/{turn_id}/events")
async def turn_events(
    turn_id: TurnId, request: Request, services: ServicesDep, principal: TurnsRead,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    async with services.listeners.reading():
        turn = await _turn_or_404(services, turn_id, principal.tenant)
    start = _last_event_id(last_event_id, None)

    services.listeners.check()

    async def events() -> AsyncIterator[dict[str, str]]:
        async with services.listeners.subscribe(turn.conversation_id, after_seq=start) as subscription:
            async for sse in _turn_stream(subscription, services, request, turn, start):
                yield sse

    return EventSourceResponse(events(), ping=PING_S)


async def _turn_stream(subscription: Subscription, services: Services, request: Request, turn: Turn,
                       cursor: int) -> AsyncIterator[dict[str, str]]:
    """The turn's events after ``cursor``, ending with its terminal event, even when that one was trimmed from
    the capped stream: then a copy rebuilt from the turn record ends it (``terminal_event_of``)."""
    keys, conv = services.ingress.keys, turn.conversation_id
    if not turn.status.terminal:
        async for event in subscription.events(idle_s=IDLE_S):
            if event is None:
                if await request.is_disconnected():
                    return
            else:
                # seqs are contiguous per conversation, so a jump means entries were trimmed before we read
                # them, perhaps this turn's end; otherwise keep following until the turn's own end comes.
                trimmed, cursor = event.seq > cursor + 1, event.seq
                if event.turn_id == turn.id:
                    yield _sse(event)
                    if event.terminal:
                        return
                if not trimmed:
                    continue
            current = await services.ingress.get_turn(turn.id)
            if current is None:  # the record outlived its retention: nothing left to end with
                return
            if current.status.terminal:
                turn = current
                break
    # The turn has ended, and the end is recorded and published in one script: whatever of it the stream
    # still holds is stored by now, so reading to the current end is enough.
    async for event in replay(services.ingress.client, keys, conv, after_seq=cursor):
        cursor = event.seq
        if event.turn_id == turn.id:
            yield _sse(event)
            if event.terminal:
                return
    final = terminal_event_of(turn, seq=cursor)
    yield {"id": str(final.seq), "event": final.type, "data": final.model_dump_json(exclude_none=True)}


async def wait_for_turn(services: Services, turn: Turn, wait_s: float) -> Turn:
    """Return once ``turn`` is terminal, needs its bot's tool outputs, or ``wait_s`` has passed
    (long-poll)."""
    if _settled(turn) or wait_s <= 0:
        return turn
    services.listeners.check()
    conv = turn.conversation_id
    async with services.listeners.reading():
        # Note where the stream is *before* re-reading the turn, so an end in between is not missed.
        after = await last_seq(services.ingress.client, services.ingress.keys, conv)
        current = await services.ingress.get_turn(turn.id)
    if current is None or _settled(current):
        return current or turn
    deadline = time.monotonic() + wait_s
    async with services.listeners.subscribe(conv, after_seq=after) as subscription:
        async for event in subscription.events(idle_s=min(wait_s, IDLE_S)):
            if (event is not None and event.turn_id == turn.id
                    and (event.terminal or event.type == "turn.requires_action")) \
                    or time.monotonic() >= deadline:
                break
    return await services.ingress.get_turn(turn.id) or turn


def _settled(turn: Turn) -> bool:
    """Nothing will change without the client: the turn ended, or waits for its bot's tool outputs."""
    return turn.status.terminal or turn.status is TurnStatus.requires_action
