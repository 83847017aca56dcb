"""Stopping a running turn for a newer message (policy ``interrupt``), leaving nothing of it upstream.

The stream is closed where the worker noticed the request (a batch of deltas, a record, a tool round). What
the stopped response may still store is unknown (tools-and-platforms.md §5: a plain stream that goes away
ends the generation, but the emulator and a background response go on), so the worker waits for each of the
turn's responses to end, then deletes every item after the conversation's checkpoint (the last item of the
previous completed turn): no assistant fragment, no ``function_call`` without its output. The turn's input
then goes upstream again, with the newer ones (interrupt.lua, batch() in _lib.lua). Every step can be redone,
so a worker killed anywhere here is resumed by the next owner, which does it again.
"""

from __future__ import annotations

import httpx2
import openai
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from .. import metrics
from ..errors import RetryableUpstreamError, translate
from ..log import get_logger
from ..messages import Turn
from ..run import faultpoints
from ..run.policy import RetryPolicy
from ..store.mailbox import Finished, Mailbox
from ..tools.conversation import finished_response, items_after

log = get_logger(__name__)

ROLLBACK_BUDGET_S = 120.0
"""How long the rollback retries through upstream trouble before the worker gives up on the turn (it is
resumed by the next owner, which starts the rollback again)."""
MAX_PAGES = 50
"""Pages of 100 items deleted at most: a stopped turn stores a few; more means deletes are not taking."""


def response_ids(turn: Turn) -> list[str]:
    """Every upstream response the turn's stopped attempt made (one per tool round), oldest first."""
    ids = list(turn.response_ids or [])
    if turn.response_id and turn.response_id not in ids:
        ids.append(turn.response_id)
    return ids


def roll_back(client: openai.OpenAI, turn: Turn, checkpoint: str | None) -> int:
    """Wait for the turn's responses to end, then delete the conversation's items after ``checkpoint``;
    returns how many were deleted. Raises ``UpstreamError`` (retryable) when upstream is in trouble."""
    for response_id in response_ids(turn):
        finished_response(client, response_id)  # None when it never started: nothing to wait for
    deleted = 0
    for _ in range(MAX_PAGES):
        items = items_after(client, turn.conversation_id, checkpoint)
        if not items:
            return deleted
        for item in items:
            try:
                client.conversations.items.delete(item["id"], conversation_id=turn.conversation_id)
            except openai.NotFoundError:
                pass  # deleted by an owner before us
            except (openai.OpenAIError, httpx2.TransportError) as exc:
                raise translate(exc) from exc
            deleted += 1
    raise RetryableUpstreamError("the conversation's items after the checkpoint do not go away",
                                 reason="rollback_incomplete")


def stop(mailbox: Mailbox, client: openai.OpenAI, policy: RetryPolicy, conv: str, token: str,
         turn: Turn) -> Finished:
    """Take the stopped turn back upstream (retrying while upstream is in trouble, within the policy's
    backoff), put it back at the head of its conversation, and start the batch that answers it."""
    faultpoints.reached("interrupt_stopped")
    # As recorded: the stop may have come from the very record of a response id, before the caller kept it.
    turn = mailbox.load(conv, turn.id)
    checkpoint = mailbox.last_item_id(conv)
    for try_ in Retrying(retry=retry_if_exception_type(RetryableUpstreamError), wait=policy.wait_s,
                         stop=stop_after_delay(ROLLBACK_BUDGET_S), reraise=True):
        with try_:
            deleted = roll_back(client, turn, checkpoint)
    faultpoints.reached("interrupt_rolled_back")
    finished = mailbox.interrupt(conv, token, turn.id)
    mailbox.requeued()
    metrics.TURNS_FOLDED.labels(how="interrupted").inc()
    log.info("turn_interrupted", items_removed=deleted, responses=len(response_ids(turn)))
    return finished
