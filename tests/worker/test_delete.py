"""Deleting a conversation (delete.lua) against a real Redis: nothing of it stays readable, and the worker
that was running one of its turns can bring none of its keys back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from drain_support import run_ingress

from parley.worker.events.models import event_json
from parley.worker.messages import Turn, TurnStatus, turn_nonce
from parley.worker.settings import Settings
from parley.worker.store.dead_letters import DeadLetter, DeadLetters
from parley.worker.store.ingress import DELETED_EVENTS_GRACE_S, EnqueueResult, EnqueueStatus
from parley.worker.store.keys import Keys, turn_index_ttl_s
from parley.worker.store.mailbox import Fenced, Mailbox

CONV = "conv_delete_me"
KEYS = Keys()


def enqueue(settings: Settings, text: str, key: str | None = None) -> EnqueueResult:
    result: EnqueueResult = run_ingress(settings, lambda i: i.enqueue(
        conversation_id=CONV, input=text, model=None, instructions=None, metadata={"n": text},
        idempotency_key=key))
    assert result.status is EnqueueStatus.ok
    return result


@pytest.fixture(name="mailbox")
def _mailbox(settings: Settings, redis_client: redis.Redis) -> Iterator[Mailbox]:
    run_ingress(settings, lambda i: i.register_conversation(CONV, created_at=1, metadata={}, key="slack:T1:C1",
                                                    webhook_url="https://bot.example.com/hook"))
    run_ingress(settings, lambda i: i.claim_key("default", "slack:T1:C1", CONV))
    yield Mailbox(redis_client, settings)


def conversation_keys(client: redis.Redis) -> set[str]:
    return set(client.scan_iter(match=f"{KEYS.prefix}:{{{CONV}}}:*", count=1000))


def completed(mailbox: Mailbox, turn_id: str) -> tuple[Turn, str]:
    turn = mailbox.load(CONV, turn_id)
    turn.status, turn.output_text = TurnStatus.completed, "the model's reply"
    return turn, event_json("turn.completed", conversation_id=CONV, turn_id=turn_id,
                            event_id=f"{turn_id}.completed", output_text=turn.output_text)


def test_delete_leaves_only_the_webhook_and_its_own_cancellations(settings: Settings, mailbox: Mailbox) -> None:
    """A finished turn, a running one and two queued ones (one with an idempotency key): after the delete, of
    the conversation's keys only ``deleted`` (its webhook) and the event stream stay, the stream holding just
    the three cancellations for a few seconds; the replies stream got one terminal event per turn."""
    client = mailbox.client
    done, second = enqueue(settings, "first"), enqueue(settings, "second")
    claim = mailbox.claim(CONV)
    assert claim.token and claim.started
    turn, event = completed(mailbox, done.turn_id)
    running = mailbox.finish(CONV, claim.token, turn, event=event, last_item_id="msg_1", go_on=True).next
    assert running is not None and running.turn_id == second.turn_id
    mailbox.relay_replies(CONV)
    queued = [enqueue(settings, "third", key="Ev-3"), enqueue(settings, "fourth")]
    assert client.exists(KEYS.idempotency(CONV, "Ev-3")) and len(conversation_keys(client)) >= 12
    queued_before = int(client.get(KEYS.queued_total) or 0)

    cancelled = run_ingress(settings, lambda i: i.delete_conversation(CONV, "slack:T1:C1"))

    assert cancelled == 2
    assert conversation_keys(client) == {KEYS.deleted(CONV), KEYS.events(CONV)}
    assert client.hget(KEYS.deleted(CONV), "webhook_url") == "https://bot.example.com/hook"
    left = [json.loads(fields["data"]) for _, fields in client.xrange(KEYS.events(CONV))]
    assert [(e["type"], e["turn_id"], e["reason"]) for e in left] == [
        ("turn.cancelled", t, "conversation_deleted") for t in (running.turn_id, *(q.turn_id for q in queued))]
    assert 0 < client.ttl(KEYS.events(CONV)) <= DELETED_EVENTS_GRACE_S
    replies = [json.loads(fields["data"]) for _, fields in client.xrange(KEYS.replies)]
    assert [(e["type"], e["turn_id"]) for e in replies] == [("turn.completed", done.turn_id)] + [
        ("turn.cancelled", t) for t in (running.turn_id, *(q.turn_id for q in queued))]
    assert not client.exists(KEYS.conversation_key("default", "slack:T1:C1"))
    assert client.zscore(KEYS.active, CONV) is None
    assert int(client.get(KEYS.queued_total) or 0) == queued_before - 2


def test_the_running_turns_worker_brings_nothing_back(settings: Settings, mailbox: Mailbox) -> None:
    """Every write the owner of the deleted conversation's running turn may still make is fenced out, and a
    late wake-up (claim), the reaper (rekick) and a dead-letter requeue write nothing either."""
    client = mailbox.client
    first = enqueue(settings, "first")
    claim = mailbox.claim(CONV)
    assert claim.token and claim.started
    token, turn = claim.token, claim.started.turn
    client.zadd(KEYS.dead_letters, {f"{CONV}/{first.turn_id}": time.time()})
    run_ingress(settings, lambda i: i.delete_conversation(CONV, None))
    after = conversation_keys(client)

    with pytest.raises(Fenced):
        mailbox.record(CONV, turn.id, token, response_id="resp_1")
    with pytest.raises(Fenced):
        mailbox.publish(CONV, token, "response.delta", turn_id=turn.id, event_id="d1", delta="hi")
    turn.status = TurnStatus.completed
    event = event_json("turn.completed", conversation_id=CONV, turn_id=turn.id, event_id=f"{turn.id}.completed")
    with pytest.raises(Fenced):
        mailbox.finish(CONV, token, turn, event=event, last_item_id="msg_1", go_on=True)
    with pytest.raises(Fenced):
        mailbox.next_turn(CONV, token)
    with pytest.raises(Fenced):
        mailbox.hand_back(CONV, token, turn.id)
    assert mailbox.release(CONV, token) is False
    assert mailbox.claim(CONV).token is None
    assert mailbox.rekick(CONV) == 2
    assert client.zcard(KEYS.dead_letters) == 0  # the delete took its entry out
    with pytest.raises(ValueError, match="not a failed turn"):
        DeadLetters(client, KEYS).requeue(DeadLetter(CONV, first.turn_id, at=0))
    assert conversation_keys(client) == after == {KEYS.deleted(CONV), KEYS.events(CONV)}


def test_the_indexes_keep_only_what_can_still_exist(settings: Settings, mailbox: Mailbox) -> None:
    """The turn index holds nonces for three retentions and the idempotency index keys for their TTL; members
    older than that are pruned as new ones arrive, so a conversation that lives for months stays small."""
    client = mailbox.client
    now_ms = int(time.time() * 1000)
    client.zadd(KEYS.turn_index(CONV), {"0" * 16: now_ms - turn_index_ttl_s(settings.retention_s) * 1000 - 1})
    client.zadd(KEYS.idempotency_index(CONV), {"old-key": now_ms - settings.idempotency_ttl_s * 1000 - 1})
    accepted = enqueue(settings, "hi", key="Ev-1")
    assert client.zrange(KEYS.turn_index(CONV), 0, -1) == [turn_nonce(accepted.turn_id)]
    assert client.zrange(KEYS.idempotency_index(CONV), 0, -1) == ["Ev-1"]
    assert turn_index_ttl_s(settings.retention_s) - 5 < client.ttl(KEYS.turn_index(CONV)) <= \
        turn_index_ttl_s(settings.retention_s)
    assert settings.idempotency_ttl_s - 5 < client.ttl(KEYS.idempotency_index(CONV)) <= settings.idempotency_ttl_s


def test_deleting_an_idle_conversation_leaves_no_event_stream(settings: Settings, mailbox: Mailbox) -> None:
    """With nothing to cancel, the stream (here holding a finished turn's reply) goes at once."""
    accepted = enqueue(settings, "only")
    claim = mailbox.claim(CONV)
    assert claim.token
    turn, event = completed(mailbox, accepted.turn_id)
    assert mailbox.finish(CONV, claim.token, turn, event=event, last_item_id=None, go_on=True).released
    assert run_ingress(settings, lambda i: i.delete_conversation(CONV, None)) == 0
    assert conversation_keys(mailbox.client) == {KEYS.deleted(CONV)}
    assert run_ingress(settings, lambda i: i.delete_conversation(CONV, None)) == 0  # twice: nothing to do
