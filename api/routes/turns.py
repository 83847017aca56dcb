"""Turns: accept (202, idempotent, 429 when the mailbox is full), read, cancel while queued."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from parley.worker import metrics
from parley.worker.messages import TurnStatus
from parley.worker.store.ingress import EnqueueStatus
from parley.worker.store.tool_outputs import submit_tool_outputs as submit_tool_outputs_to

from ..auth import TurnsRead, TurnsWrite
from ..deps import ServicesDep
from ..errors import ApiError, not_found
from ..path_ids import ConversationId, TurnId
from ..schemas import CreateTurn, ToolOutputs, TurnAccepted, TurnOut
from ..validation import clip
from .events import MAX_WAIT_S, wait_for_turn

router = APIRouter(tags=["turns"])

FULL_RETRY_AFTER_S = 1


@router.post("/v1/conversations/{conversation_id}/turns", status_code=202, response_model=TurnAccepted)
async def create_turn(conversation_id: ConversationId, body: CreateTurn, services: ServicesDep,
                      response: Response, principal: TurnsWrite) -> Any:
    limit = services.settings.max_input_chars
    if body.input_chars() > limit:
        raise ApiError(413, "input_too_large", f"input is longer than {limit} characters.", param="input")
    result = await services.ingress.enqueue(
        conversation_id=conversation_id, input=body.input_value(), model=body.model,
        instructions=body.instructions, metadata=body.metadata or {}, idempotency_key=body.idempotency_key,
        tenant=principal.tenant, deadline_s=body.deadline_s, request=body.options(),
        server_tools=body.server_tools_value(), texting=body.texting())
    if result.status is EnqueueStatus.missing:
        raise not_found("conversation", conversation_id)
    if result.status is EnqueueStatus.full:
        raise ApiError(429, "mailbox_full", f"This conversation already has {result.position} queued turns.",
                       headers={"Retry-After": str(FULL_RETRY_AFTER_S)})
    if result.status is EnqueueStatus.overloaded:
        raise ApiError(429, "overloaded", "parley has too many queued turns; retry shortly.",
                       headers={"Retry-After": str(FULL_RETRY_AFTER_S)})
    if result.status is EnqueueStatus.invalid:
        raise ApiError(422, "invalid_request", f"{result.detail}.", param="debounce_ms")
    if result.status is EnqueueStatus.busy:
        raise ApiError(409, "conversation_busy",
                       f"Conversation {conversation_id} has a turn queued or running and its policy is "
                       "double_texting=reject; send the message once it has ended.",
                       param="double_texting")
    if result.status is EnqueueStatus.reused:
        raise ApiError(409, "idempotency_key_reused",
                       f"idempotency_key {clip(body.idempotency_key or '')!r} was already used by turn "
                       f"{result.turn_id} with a different request; use a new key for a new message.",
                       param="idempotency_key")
    if result.need_wakeup:
        services.wake(conversation_id)
    if result.status is EnqueueStatus.ok:
        metrics.TURNS_ACCEPTED.inc()
        if result.superseded:
            metrics.TURNS_FOLDED.labels(how="superseded").inc(result.superseded)
        return {"id": result.turn_id, "conversation_id": conversation_id, "status": TurnStatus.queued,
                "position": result.position, "created_at": result.created_at}
    turn = await services.ingress.get_turn(result.turn_id, principal.tenant)
    if turn is None:  # the duplicate's record outlived its retention
        raise not_found("turn", result.turn_id)
    response.status_code = 200
    return {"id": turn.id, "conversation_id": conversation_id, "status": turn.status,
            "position": result.position, "created_at": turn.created_at}


@router.get("/v1/turns/{turn_id}", response_model=TurnOut)
async def get_turn(turn_id: TurnId, services: ServicesDep, principal: TurnsRead,
                   wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT_S)] = None) -> Any:
    """With ``wait=SECONDS`` (at most 60), answer once the turn has ended or the time is up (long-poll)."""
    turn = await services.ingress.get_turn(turn_id, principal.tenant)
    if turn is None:
        raise not_found("turn", turn_id)
    return TurnOut.of(await wait_for_turn(services, turn, wait or 0.0))


@router.post("/v1/turns/{turn_id}/cancel", response_model=TurnOut)
async def cancel_turn(turn_id: TurnId, services: ServicesDep, principal: TurnsWrite) -> Any:
    turn = await services.ingress.get_turn(turn_id, principal.tenant)
    if turn is None:
        raise not_found("turn", turn_id)
    if not await services.ingress.cancel(turn):
        raise ApiError(409, "not_cancellable", f"Turn {turn_id} is {turn.status.value}; only queued turns "
                                                "can be cancelled.", param="id")
    cancelled = await services.ingress.get_turn(turn_id)
    return TurnOut.of(cancelled or turn)


@router.post("/v1/turns/{turn_id}/tool_outputs", response_model=TurnOut)
async def submit_tool_outputs(turn_id: TurnId, body: ToolOutputs, services: ServicesDep,
                              principal: TurnsWrite) -> Any:
    """The bot's outputs for every call of a turn that ``requires_action``; the turn then resumes. Posting the
    same outputs again is a 200 that changes nothing."""
    turn = await services.ingress.get_turn(turn_id, principal.tenant)
    if turn is None:
        raise not_found("turn", turn_id)
    outputs = {o.call_id: o.output for o in body.outputs}
    if len(outputs) != len(body.outputs):
        # Not expressible in the document's JSON Schema: answered like any outputs that do not fit the calls.
        ids = [o.call_id for o in body.outputs]
        twice = next(call_id for call_id in ids if ids.count(call_id) > 1)
        raise ApiError(409, "tool_outputs_mismatch", f"call_id {clip(twice)!r} appears more than once.",
                       param="outputs")
    ingress = services.ingress
    result = await submit_tool_outputs_to(ingress.client, ingress.keys, services.settings,
                                          conv=turn.conversation_id, turn_id=turn_id, outputs=outputs)
    if result.status == "not_found":
        raise not_found("turn", turn_id)
    if result.status in ("unknown_call", "missing_call"):
        says = ("is not one of the turn's pending calls" if result.status == "unknown_call"
                else "has no output: post one for every pending call")
        # A well-formed body that does not fit the turn's state: a conflict, as the pending calls decide.
        raise ApiError(409, "tool_outputs_mismatch", f"call_id {clip(result.detail)!r} {says}.",
                       param="outputs")
    if result.status == "ok" and result.need_wakeup:
        services.wake(turn.conversation_id)
    current = await ingress.get_turn(turn_id, principal.tenant)
    return TurnOut.of(current or turn)
