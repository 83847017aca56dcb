"""Conversations: get-or-create (which creates the OpenAI conversation), read with queue state, update,
delete, and the upstream items proxy."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import openai
from fastapi import APIRouter, Query, Response

from parley.worker.log import get_logger
from parley.worker.messages import is_conversation_id

from ..auth import ConversationsRead, ConversationsWrite, Principal
from ..deps import Services, ServicesDep
from ..errors import ApiError, not_found
from ..path_ids import ConversationId
from ..schemas import (
    Conversation,
    ConversationDeleted,
    ConversationWithQueue,
    CreateConversation,
    UpdateConversation,
)
from ..upstream_errors import upstream_error
from ..validation import clip

log = get_logger(__name__)

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


async def _existing(services: ServicesDep, conversation_id: str, principal: Principal) -> dict[str, Any]:
    """The conversation's record, if it belongs to the caller's tenant: another tenant's is a 404 like a
    missing one, so ids do not even tell whether they exist."""
    record = await services.ingress.conversation(conversation_id)
    if record is None or not principal.owns(record.get("tenant")):
        raise not_found("conversation", conversation_id)
    return record


async def _drop_upstream(services: ServicesDep, conversation_id: str) -> None:
    """Best effort: an upstream conversation parley will not use."""
    try:
        await services.openai.conversations.delete(conversation_id)
    except openai.OpenAIError:
        pass


async def get_or_create(services: Services, *, tenant: str, key: str | None, metadata: dict[str, str],
                        webhook_url: str | None = None, webhook_events: list[str] | None = None,
                        defaults: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """The conversation bound to ``key`` in ``tenant``, else a new one (created upstream first); and whether
    it is new. Shared by the route and the bridges (a Slack thread's conversation). Raises ``ApiError``."""
    ingress, defaults = services.ingress, defaults or {}
    if key is not None:
        # Keys are per tenant: the same Slack thread id names different conversations for two bots.
        bound = await ingress.conversation_for_key(tenant, key)
        if bound is not None and (record := await ingress.conversation(bound)) is not None:
            return record, False
    try:
        upstream = await services.openai.conversations.create(metadata=metadata)
    except openai.OpenAIError as exc:
        raise upstream_error(exc) from exc
    if not is_conversation_id(upstream.id):
        # Every route would answer 404 for it (path_ids.py): refuse now rather than hand out a dead id.
        log.error("upstream_conversation_id_refused", id=clip(upstream.id))
        await _drop_upstream(services, upstream.id)
        raise ApiError(502, "upstream_bad_id", f"The model provider made a conversation id that is not of "
                       f"the form conv_... ({clip(upstream.id)!r}).")
    if key is not None:
        winner = await ingress.claim_key(tenant, key, upstream.id)
        if winner != upstream.id:
            # Lost a race with a parallel create for the same key: keep theirs, drop ours.
            await _drop_upstream(services, upstream.id)
            if (record := await ingress.conversation(winner)) is not None:
                return record, False
    await ingress.register_conversation(upstream.id, created_at=upstream.created_at,
                                        metadata=dict(upstream.metadata or {}), key=key,
                                        webhook_url=webhook_url, webhook_events=webhook_events,
                                        tenant=tenant, defaults=defaults)
    return {"id": upstream.id, "created_at": upstream.created_at, "metadata": dict(upstream.metadata or {}),
            "key": key, "webhook_url": webhook_url, "webhook_events": webhook_events if webhook_url else None,
            "defaults": defaults}, True


@router.post("", status_code=201, response_model=Conversation)
async def create_conversation(body: CreateConversation, services: ServicesDep, response: Response,
                              principal: ConversationsWrite) -> Any:
    record, created = await get_or_create(
        services, tenant=principal.tenant, key=body.key, metadata=body.metadata or {},
        webhook_url=body.webhook_url, webhook_events=body.webhook_events,
        defaults=body.defaults.fields() if body.defaults is not None else {})
    if not created:
        response.status_code = 200
    return record


@router.get("/{conversation_id}", response_model=ConversationWithQueue)
async def get_conversation(conversation_id: ConversationId, services: ServicesDep,
                           principal: ConversationsRead) -> Any:
    record = await _existing(services, conversation_id, principal)
    state = await services.ingress.queue_state(conversation_id)
    return {**record, "pending": state.pending, "running_turn": state.running_turn}


@router.post("/{conversation_id}", response_model=Conversation)
async def update_conversation(conversation_id: ConversationId, body: UpdateConversation,
                              services: ServicesDep, principal: ConversationsWrite) -> Any:
    """Change the fields given (``metadata`` and ``defaults`` replace theirs as a whole); the others stay."""
    record = await _existing(services, conversation_id, principal)
    given = body.model_fields_set
    defaults = None
    if "defaults" in given:  # null as well as {} clears them
        defaults = body.defaults.fields() if body.defaults is not None else {}
    metadata = None
    if body.metadata is not None:
        # Upstream first: if OpenAI refuses, nothing changed here either.
        try:
            upstream = await services.openai.conversations.update(conversation_id, metadata=body.metadata)
        except openai.OpenAIError as exc:
            raise upstream_error(exc) from exc
        metadata = dict(upstream.metadata or {})
    updated = await services.ingress.update_conversation(conversation_id, metadata=metadata,
                                                         defaults=defaults)
    if updated is None:  # deleted meanwhile
        raise not_found("conversation", conversation_id)
    if given & {"webhook_url", "webhook_events"}:
        # A field left out keeps its value; one given as null goes back to the default.
        url = body.webhook_url if "webhook_url" in given else record.get("webhook_url")
        events = body.webhook_events if "webhook_events" in given else record.get("webhook_events")
        if not await services.ingress.set_webhook_url(conversation_id, url, events):
            raise not_found("conversation", conversation_id)
        return await _existing(services, conversation_id, principal)
    return updated if metadata is not None or defaults is not None else record


@router.delete("/{conversation_id}", response_model=ConversationDeleted)
async def delete_conversation(conversation_id: ConversationId, services: ServicesDep,
                              principal: ConversationsWrite) -> dict[str, Any]:
    record = await _existing(services, conversation_id, principal)
    await services.ingress.delete_conversation(conversation_id, record.get("key"), record["tenant"])
    try:
        await services.openai.conversations.delete(conversation_id)
    except openai.NotFoundError:
        pass
    except openai.OpenAIError as exc:
        raise upstream_error(exc) from exc
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.get("/{conversation_id}/items")
async def list_items(
    conversation_id: ConversationId,
    services: ServicesDep,
    principal: ConversationsRead,
    after: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> Any:
    await _existing(services, conversation_id, principal)
    params: dict[str, Any] = {"limit": limit, "order": order}
    if after:
        params["after"] = after
    try:
        page = await services.openai.conversations.items.list(conversation_id, **params)
    except openai.OpenAIError as exc:
        raise upstream_error(exc) from exc
    data = [item.model_dump(mode="json", exclude_unset=True) for item in page.data]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": bool(page.has_more)}

