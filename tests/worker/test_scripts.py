"""The mailbox protocol's Lua scripts against a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from parley.worker.store import scripts
from parley.worker.events.models import event_json
from parley.worker.messages import Turn, TurnStatus
from parley.worker.settings import Settings
from parley.worker.store.ingress import EnqueueStatus, Ingress
from parley.worker.store.keys import Keys
from parley.worker.store.mailbox import Fenced, Mailbox

CONV = "conv_test"


@pytest.fixture(name="mailbox")
def _mailbox(settings: Settings, redis_client: redis.Redis) -> Mailbox:
    return Mailbox(redis_client, settings)


@pytest.fixture(name="ingress")
def _ingress(settings: Settings) -> Iterator[Ingress]:
    client = redis.asyncio.Redis.from_url(settings.redis_url_required, decode_responses=True)
    ingress = Ingress(client, settings)
    asyncio.run(ingress.register_conversation(CONV, created_at=1, metadata={}, key=None))
    yield ingress


def enqueue(ingress: Ingress, text: str, key: str | None = None, conv: str = CONV) -> object:
    async def go() -> object:
        client = redis.asyncio.Redis.from_url(ingress.settings.redis_url_required, decode_responses=True)
        try:
            return await Ingress(client, ingress.settings).enqueue(
                conversation_id=conv, input=text, model=None, instructions=None, metadata={},
                idempotency_key=key)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_enqueue_appends_and_asks_for_one_wakeup(ingress: Ingress, mailbox: Mailbox) -> None:
    first, second = enqueue(ingress, "a"), enqueue(ingress, "b")
    assert first.status is EnqueueStatus.ok and first.need_wakeup and first.position == 1
    assert second.position == 2 and not second.need_wakeup  # one pending wake-up is enough
    assert mailbox.client.lrange(mailbox.keys.inbox(CONV), 0, -1) == [first.turn_id, second.turn_id]
    assert mailbox.load(CONV, first.turn_id).status is TurnStatus.queued


def test_enqueue_dedupes_on_idempotency_key(ingress: Ingress) -> None:
    first, again = enqueue(ingress, "a", key="evt-1"), enqueue(ingress, "a", key="evt-1")
    assert again.status is EnqueueStatus.duplicate and again.turn_id == first.turn_id
    assert again.position == 1


def test_enqueue_refuses_an_idempotency_key_reused_for_another_request(ingress: Ingress) -> None:
    """The same key with another input is ``reused`` and enqueues nothing, instead of returning the old turn
    while the new message is dropped."""
    first, other = enqueue(ingress, "a", key="evt-2"), enqueue(ingress, "b", key="evt-2")
    assert other.status is EnqueueStatus.reused and other.turn_id == first.turn_id
    assert enqueue(ingress, "a", key="evt-2").status is EnqueueStatus.duplicate
    assert ingress.settings.mailbox_cap > 1 and len(asyncio.run(_inbox(ingress))) == 1


async def _inbox(ingress: Ingress) -> list[str]:
    client = redis.asyncio.Redis.from_url(ingress.settings.redis_url_required, decode_responses=True)
    try:
        return list(await client.lrange(ingress.keys.inbox(CONV), 0, -1))
    finally:
        await client.aclose()


def test_enqueue_refuses_unknown_conversation_and_full_mailbox(ingress: Ingress, settings: Settings) -> None:
    assert enqueue(ingress, "a", conv="conv_other").status is EnqueueStatus.missing
    ingress.settings.mailbox_cap = 2
    enqueue(ingress, "a"), enqueue(ingress, "b")
    assert enqueue(ingress, "c").status is EnqueueStatus.full


def test_claim_takes_the_lease_and_starts_the_head_turn(ingress: Ingress, mailbox: Mailbox) -> None:
    idle = mailbox.claim(CONV)
    assert idle.token is not None and idle.started is None  # nothing queued
    assert not mailbox.client.exists(mailbox.keys.lease(CONV))  # so no lease was kept
    accepted = enqueue(ingress, "a")
    claim = mailbox.claim(CONV)
    assert claim.token and claim.started and claim.started.turn_id == accepted.turn_id
    assert claim.started.attempts == 1 and not claim.started.resumed
    assert claim.started.turn.status is TurnStatus.running and claim.started.turn.input == "a"
    assert mailbox.claim(CONV).token is None  # exclusive


def test_lease_is_fenced(ingress: Ingress, mailbox: Mailbox) -> None:
    accepted = enqueue(ingress, "a")
    token = mailbox.claim(CONV).token
    assert token
    # The lease expires (the owner stalled); a new owner takes over and resumes the same turn.
    mailbox.client.delete(mailbox.keys.lease(CONV))
    second = mailbox.claim(CONV)
    assert second.token is not None and int(second.token) > int(token)
    assert second.started and second.started.resumed and second.started.attempts == 2
    # The stale owner can neither record, publish, start, finish nor release.
    with pytest.raises(Fenced):
        mailbox.record(CONV, accepted.turn_id, token, response_id="resp_x")
    with pytest.raises(Fenced):
        mailbox.publish(CONV, token, "turn.started", turn_id=accepted.turn_id, event_id="e")
    with pytest.raises(Fenced):
        mailbox.next_turn(CONV, token)
    turn = mailbox.load(CONV, accepted.turn_id)
    with pytest.raises(Fenced):
        mailbox.finish(CONV, token, turn, event=_event(turn), last_item_id=None)
    assert mailbox.release(CONV, token) is False
    assert mailbox.client.get(mailbox.keys.lease(CONV)) == second.token


def _event(turn: Turn) -> str:
    return event_json("turn.completed", conversation_id=turn.conversation_id, turn_id=turn.id,
                      event_id=f"{turn.id}.completed")


def _done(mailbox: Mailbox, turn_id: str) -> Turn:
    turn = mailbox.load(CONV, turn_id)
    turn.status = TurnStatus.completed
    return turn


def test_finish_publishes_once_with_increasing_seq(ingress: Ingress, mailbox: Mailbox) -> None:
    enqueue(ingress, "a")
    claim = mailbox.claim(CONV)
    assert claim.token and claim.started
    turn = _done(mailbox, claim.started.turn_id)
    finished = mailbox.finish(CONV, claim.token, turn, event=_event(turn), last_item_id="msg_1")
    with pytest.raises(Fenced):  # a second finish of the same turn is refused
        mailbox.finish(CONV, claim.token, turn, event=_event(turn), last_item_id="msg_1")
    entries = mailbox.client.xrange(mailbox.keys.events(CONV))
    assert [json.loads(e[1]["data"])["type"] for e in entries] == ["turn.queued", "turn.started", "turn.completed"]
    assert [json.loads(e[1]["data"])["seq"] for e in entries] == [1, 2, 3] and finished.seq == 3
    assert entries[-1][0] == "3-0"
    started_event = json.loads(entries[1][1]["data"])
    assert started_event["id"] == f"{turn.id}.started.1" and started_event["attempt"] == 1
    assert mailbox.last_item_id(CONV) == "msg_1"
    assert mailbox.load(CONV, turn.id).status is TurnStatus.completed
    assert mailbox.client.lrange(mailbox.keys.outbox(CONV), 0, -1) == [entries[-1][1]["data"]]


def test_finish_goes_on_to_the_next_turn_or_gives_the_lease_back(ingress: Ingress, mailbox: Mailbox) -> None:
    first, second = enqueue(ingress, "a"), enqueue(ingress, "b")
    claim = mailbox.claim(CONV)
    assert claim.token and claim.started and claim.started.turn_id == first.turn_id
    finished = mailbox.finish(CONV, claim.token, _done(mailbox, first.turn_id),
                              event=_event(_done(mailbox, first.turn_id)), last_item_id=None, go_on=True)
    assert finished.next and finished.next.turn_id == second.turn_id and not finished.released
    last = mailbox.finish(CONV, claim.token, _done(mailbox, second.turn_id),
                          event=_event(_done(mailbox, second.turn_id)), last_item_id=None, go_on=True)
    assert last.next is None and last.released
    assert not mailbox.client.exists(mailbox.keys.lease(CONV))
    assert enqueue(ingress, "c").need_wakeup  # nobody owns it now: the next turn asks for a wake-up


def test_release_remarks_ready_when_work_arrived(ingress: Ingress, mailbox: Mailbox) -> None:
    first = enqueue(ingress, "a")
    claim = mailbox.claim(CONV)
    assert claim.token
    during = enqueue(ingress, "arrives while owned")
    assert not during.need_wakeup  # the owner will see it
    mailbox.finish(CONV, claim.token, _done(mailbox, first.turn_id), event=_event(_done(mailbox, first.turn_id)),
                   last_item_id=None)  # budget spent: the lease stays
    assert mailbox.release(CONV, claim.token) is True
    assert mailbox.client.hget(mailbox.keys.state(CONV), "ready") == "1"
    again = mailbox.claim(CONV)
    assert again.token and again.started and again.started.turn_id == during.turn_id
    assert mailbox.release(CONV, again.token) is True  # in-flight turn handed back
    assert mailbox.rekick(CONV) == 0  # ready and recent: no second wake-up


def test_rekick_wakes_an_orphaned_conversation(ingress: Ingress, mailbox: Mailbox) -> None:
    enqueue(ingress, "a")  # marks ready and the wake-up is "lost"
    assert mailbox.rekick(CONV) == 0
    mailbox.client.hset(mailbox.keys.state(CONV), "hint_at", 0)  # stale
    assert mailbox.rekick(CONV) == 1
    claim = mailbox.claim(CONV)
    assert claim.started and mailbox.rekick(CONV) == 0  # owned


def test_cancel_only_queued_turns(ingress: Ingress, mailbox: Mailbox) -> None:
    first, second = enqueue(ingress, "a"), enqueue(ingress, "b")
    cancelled = asyncio.run(_cancel(ingress, second.turn_id))
    assert cancelled is True
    claim = mailbox.claim(CONV)
    assert claim.token and claim.started and claim.started.turn_id == first.turn_id
    assert asyncio.run(_cancel(ingress, first.turn_id)) is False  # running
    finished = mailbox.finish(CONV, claim.token, _done(mailbox, first.turn_id),
                              event=_event(_done(mailbox, first.turn_id)), last_item_id=None, go_on=True)
    assert finished.next is None and finished.released  # the cancelled turn is skipped


async def _cancel(ingress: Ingress, turn_id: str) -> bool:
    client = redis.asyncio.Redis.from_url(ingress.settings.redis_url_required, decode_responses=True)
    try:
        fresh = Ingress(client, ingress.settings)
        turn = await fresh.get_turn(turn_id)
        assert turn is not None
        return await fresh.cancel(turn)
    finally:
        await client.aclose()


def test_every_conversation_key_is_in_one_cluster_slot() -> None:
    keys = Keys("parley")
    names = [keys.conversation(CONV), keys.inbox(CONV), keys.inflight(CONV), keys.lease(CONV), keys.fence(CONV),
             keys.state(CONV), keys.turn(CONV, "turn_1"), keys.idempotency(CONV, "k"), keys.seq(CONV),
             keys.events(CONV), keys.outbox(CONV), keys.deleted(CONV), keys.turn_index(CONV),
             keys.idempotency_index(CONV), keys.turn_prefix(CONV) + "x", keys.idempotency_prefix(CONV) + "y"]
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_scripts_survive_a_script_flush(mailbox: Mailbox) -> None:
    mailbox.client.script_flush()
    assert scripts.HEARTBEAT(mailbox.client, [mailbox.keys.lease(CONV)], ["1", 1000]) == 0


def test_pipelined_calls_survive_a_script_flush(mailbox: Mailbox) -> None:
    mailbox.client.script_flush()
    lease = mailbox.keys.lease(CONV)
    mailbox.client.set(lease, "7", px=1000)
    assert scripts.HEARTBEAT.pipelined(mailbox.client, [([lease], ["7", 5000]), ([lease], ["8", 5000])]) == [1, 0]
    assert mailbox.client.pttl(lease) > 1000


def test_one_redis_publishes_for_plain_subscribers(ingress: Ingress, redis_client: redis.Redis) -> None:
    """On one Redis the scripts PUBLISH (a plain SUBSCRIBE gets the event); their cluster variants, which
    SPUBLISH instead, differ from them in the first line only."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(Keys().events(CONV))
    accepted = enqueue(ingress, "a")
    message = None
    for _ in range(20):  # the ignored subscribe confirmation reads as None first
        message = message or pubsub.get_message(timeout=0.1)
    assert message and message["type"] == "message" and json.loads(message["data"])["turn_id"] == accepted.turn_id
    pubsub.close()
    for script in scripts.ALL:
        plain, sharded = script.source.splitlines(), script.cluster_source.splitlines()
        assert plain[0] == "local SHARDED_PUBSUB = false" and sharded[0] == "local SHARDED_PUBSUB = true"
        assert plain[1:] == sharded[1:] and script.sha != script.cluster_sha


def _tool_events(mailbox: Mailbox) -> list[tuple[str, int]]:
    entries = mailbox.client.xrange(mailbox.keys.events(CONV))
    return [(json.loads(f["data"])["type"], json.loads(f["data"])["seq"]) for _, f in entries
            if json.loads(f["data"])["type"].startswith("tool.")]


def test_a_tool_round_records_then_publishes_in_one_script_each(ingress: Ingress, mailbox: Mailbox) -> None:
    """record_publish.lua (the calls, then tool.called) and tool_results.lua with its event (the result, then
    tool.completed): one round trip each, fenced, and an interrupt still stops the event."""
    from parley.worker.store.mailbox import Interrupted
    from parley.worker.tools.loop import Call, ToolState
    from parley.worker.tools.records import ToolRecords

    enqueue(ingress, "a")
    claim = mailbox.claim(CONV)
    assert claim.token and claim.started
    turn, token = claim.started.turn, claim.token
    calls = [Call(call_id=f"c{i}", name="add", arguments="{}", round=0, runs="server") for i in range(2)]
    records = ToolRecords(mailbox, CONV, token, turn)
    records.calls(ToolState(calls=calls, response_ids=["resp_0"]), calls)
    stored = mailbox.load(CONV, turn.id)
    assert [c["call_id"] for c in stored.tool_calls or []] == ["c0", "c1"] and stored.response_ids == ["resp_0"]
    records.results({"c0": "7"}, completed={"call_id": "c0", "name": "add", "duration_ms": 1.0})
    assert mailbox.client.hget(mailbox.keys.tool_results(CONV, turn.id), "c0") == "7"
    events = _tool_events(mailbox)
    assert [t for t, _ in events] == ["tool.called", "tool.called", "tool.completed"]
    assert [s for _, s in events] == sorted(s for _, s in events)
    # Interrupted: the result is recorded all the same, its event is not published; the calls likewise.
    mailbox.client.hset(mailbox.keys.turn(CONV, turn.id), "interrupt_by", "t_newer")
    with pytest.raises(Interrupted):
        records.results({"c1": "8"}, completed={"call_id": "c1", "name": "add", "duration_ms": 1.0})
    assert mailbox.client.hget(mailbox.keys.tool_results(CONV, turn.id), "c1") == "8"
    with pytest.raises(Interrupted):
        records.calls(ToolState(calls=calls, response_ids=["resp_0", "resp_1"]), calls)
    assert mailbox.load(CONV, turn.id).response_ids == ["resp_0", "resp_1"]
    assert len(_tool_events(mailbox)) == 3
    # Fenced: nothing written.
    stale = ToolRecords(mailbox, CONV, "stale", turn)
    with pytest.raises(Fenced):
        stale.results({"c2": "9"}, completed={"call_id": "c2", "name": "add", "duration_ms": 1.0})
    with pytest.raises(Fenced):
        stale.calls(ToolState(calls=calls, response_ids=["resp_x"]), calls)
    assert not mailbox.client.hexists(mailbox.keys.tool_results(CONV, turn.id), "c2")
    assert mailbox.load(CONV, turn.id).response_ids == ["resp_0", "resp_1"] and len(_tool_events(mailbox)) == 3
