"""Path ids, checked against their grammar (``parley.worker.messages``) before anything touches Redis.

A malformed id is answered as an unknown one: 404 ``not_found`` in the envelope, not 422. It names no
conversation or turn, exactly like a well-formed id that does not exist, so a client handles one case, the
routes keep one existence check, and nothing a prober sends (an 8 KB id, braces that would leave the hash
slot) reaches a key. The OpenAPI document still states the grammar (``pattern``, ``maxLength``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from parley.worker.messages import (
    CONVERSATION_ID_PATTERN,
    MAX_CONVERSATION_ID_CHARS,
    MAX_TURN_ID_CHARS,
    TURN_ID_PATTERN,
    conversation_of,
    is_conversation_id,
)

from .errors import not_found


def _conversation_id(conversation_id: Annotated[str, Path(
        description="A conversation id as upstream made it (`conv_...`).",
        json_schema_extra={"pattern": CONVERSATION_ID_PATTERN, "maxLength": MAX_CONVERSATION_ID_CHARS})]
                     ) -> str:
    if not is_conversation_id(conversation_id):
        raise not_found("conversation", conversation_id)
    return conversation_id


def _turn_id(turn_id: Annotated[str, Path(
        description="A turn id as parley made it (`turn_<16 hex>_<conversation id>`).",
        json_schema_extra={"pattern": TURN_ID_PATTERN, "maxLength": MAX_TURN_ID_CHARS})]) -> str:
    if conversation_of(turn_id) is None:
        raise not_found("turn", turn_id)
    return turn_id


ConversationId = Annotated[str, Depends(_conversation_id)]
TurnId = Annotated[str, Depends(_turn_id)]
