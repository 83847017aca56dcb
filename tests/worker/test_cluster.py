"""The state side on a real 3-master Redis Cluster (the embedded cluster fixture), in-process: the ingress and
the drain loop against the emulator through the real SDK, every Lua script, sharded pub/sub, the reaper and
the dead letters. Conversations are spread over all three shards."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from pydantic import ValidationError
from drain_support import make_drainer

from parley.worker.events.replies import ReplyConsumer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.messages import TurnStatus
from parley.worker.run.circuit import Circuit
from parley.worker.run.reaper import reap
from parley.worker.run.upstream import Upstream, make_client
from parley.worker.settings import Settings
from parley.worker.store import scripts
from parley.worker.store.connections import async_client, is_cluster, sync_client
from parley.worker.store.dead_letters import DeadLetters
from parley.worker.store.ingress import EnqueueStatus, Ingress
from parley.worker.store.keys import Keys
from parley.worker.store.tool_outputs import submit_tool_outputs
from parley.worker.tools.loop import Call, ToolState
from parley.worker.tools.records import ToolRecords
from parley.worker.webhooks.store import Record, WebhookStore

T = TypeVar("T")
KEYS = Keys()


def on_ingress(settings: Settings, action: Callable[[Ingress], Awaitable[T]]) -> T:
    """Run ``action`` with an Ingress on a fresh async cluster client (asyncio.run per call, as the API's
    own loop would own one)."""
    async def go() -> T:
        client = async_client(settings)
        try:
            return await action(Ingress(client, settings))
        finally:
            await client.aclose()

    return asyncio.run(go())


def node_client(node: Any) -> redis.Redis:
    """A plain client of one cluster node (what a cluster-unaware subscriber would use)."""
    return redis.Redis(host=node.host, port=node.port, decode_responses=True)


class ClusterHarness:
    """Conversations registered on the cluster, a drainer, and the emulator that holds their items."""

    def __init__(self, settings: Settings, emulator: EmulatorServer, conversations: int) -> None:
        self.settings, self.emulator = settings, emulator
        self.client = sync_client(settings)
        self.upstream = Upstream(make_client(settings, concurrency=4), settings)
        self.woken: list[str] = []
        self.drainer = make_drainer(settings, self.client, self.upstream, wake=self.woken.append)
        self.mailbox = self.drainer.mailbox
        self.convs = [self.upstream.client.conversations.create().id for _ in range(conversations)]

        async def register(ingress: Ingress) -> None:
            for conv in self.convs:
                await ingress.register_conversation(conv, created_at=1, metadata={}, key=None)

        on_ingress(settings, register)

    def post(self, conv: str, text: str, key: str | None = None, **metadata: str) -> Any:
        return on_ingress(self.settings, lambda i: i.enqueue(conversation_id=conv, input=text, model=None,
                                                             instructions=None, metadata=metadata,
                                                             idempotency_key=key))

    def events(self, conv: str) -> list[dict[str, Any]]:
        return [json.loads(fields["data"]) for _, fields in self.client.xrange(KEYS.events(conv))]

    def user_texts(self, conv: str) -> list[str]:
        return ["".join(p["text"] for p in i["content"]) for i in self.emulator.store.snapshot_items(conv)
                if i["role"] == "user"]

    def nodes(self) -> set[str]:
        """The masters that hold at least one of the conversations."""
        return {self.client.get_node_from_key(KEYS.inbox(conv)).name for conv in self.convs}  # type: ignore


def test_a_cluster_needs_a_broker_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_REDIS_CLUSTER without PARLEY_BROKER_URL stops the process at start-up, naming the setting
    (Celery would otherwise use a cluster node as its broker); with one, the settings take it."""
    monkeypatch.setenv("PARLEY_REDIS_URL", "redis://10.0.0.5:6379/0")
    monkeypatch.setenv("PARLEY_REDIS_CLUSTER", "true")
    with pytest.raises(ValidationError, match="PARLEY_BROKER_URL"):
        Settings(_env_file=None)
    monkeypatch.setenv("PARLEY_BROKER_URL", "amqp://guest:guest@10.0.0.6:5672//")
    assert Settings(_env_file=None).redis_cluster is True


@pytest.fixture(name="h")
def _harness(cluster_settings: Settings, emulator: EmulatorServer) -> Iterator[ClusterHarness]:
    harness = ClusterHarness(cluster_settings, emulator, conversations=30)
    yield harness
    harness.drainer.keeper.stop()
    harness.client.close()


def test_the_clients_are_cluster_clients_and_conversations_span_every_shard(h: ClusterHarness) -> None:
    """With PARLEY_REDIS_CLUSTER the connections module builds cluster clients, and the test's 30
    conversations live on all three masters (so the tests below cross shards)."""
    assert is_cluster(h.client) and len(h.client.get_primaries()) == 3  # type: ignore[attr-defined]
    assert len(h.nodes()) == 3


def test_turns_drain_in_order_on_every_shard(h: ClusterHarness) -> None:
    """Three turns in each of 30 conversations run in order, once each, with gapless seqs and the replies
    relayed to the global replies stream (another slot than any conversation's)."""
    accepted = {conv: [h.post(conv, f"{conv[-4:]} t{i}").turn_id for i in range(3)] for conv in h.convs}
    for conv in h.convs:
        result = h.drainer.drain(conv)
        assert result.claimed and result.turns == 3
    for conv, turns in accepted.items():
        assert h.user_texts(conv) == [f"{conv[-4:]} t{i}" for i in range(3)]
        events = h.events(conv)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert [e["turn_id"] for e in events if e["type"] == "turn.completed"] == turns
        assert {h.mailbox.load(conv, t).status for t in turns} == {TurnStatus.completed}
    consumer = ReplyConsumer(h.client, group="cluster-test", name="c1", start="0")
    replies = [d.event.turn_id for d in consumer.read(count=1000, block_ms=100)]
    assert sorted(replies) == sorted(t for turns in accepted.values() for t in turns)


def test_events_are_published_on_the_shard_of_their_conversation(h: ClusterHarness) -> None:
    """On a cluster the scripts SPUBLISH: a sharded subscriber of one conversation gets its events, live and
    in order, while a plain PSUBSCRIBE on every master gets nothing (no broadcast over the cluster bus)."""
    conv = h.convs[0]
    sharded = h.client.pubsub()  # type: ignore[attr-defined]
    sharded.ssubscribe(KEYS.events(conv))
    plain = [node_client(n).pubsub(ignore_subscribe_messages=True) for n in h.client.get_primaries()]  # type: ignore
    for pubsub in plain:
        pubsub.psubscribe(KEYS.events("*"))
    assert sharded.get_sharded_message(timeout=2)["type"] == "ssubscribe"
    got: list[dict[str, Any]] = []
    turn = h.post(conv, "hello").turn_id
    h.drainer.drain(conv)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(e.get("type") == "turn.completed" for e in got):
        message = sharded.get_sharded_message(ignore_subscribe_messages=True, timeout=0.1)
        if message and message["type"] == "smessage":
            got.append(json.loads(message["data"]))
    assert [e["type"] for e in got][:2] == ["turn.queued", "turn.started"]
    assert got[-1]["type"] == "turn.completed" and got[-1]["turn_id"] == turn
    assert [e["seq"] for e in got] == [e["seq"] for e in h.events(conv)]
    assert all(p.get_message(timeout=0.05) is None for p in plain)
    sharded.close()
    for pubsub in plain:
        pubsub.close()


def test_every_script_runs_on_the_cluster(h: ClusterHarness) -> None:
    """Each Lua script runs on the cluster without a cross-slot error, through the code that calls it (the
    ingress, the drain loop, the heartbeat, the reaper, the dead letters, the webhook store, the rate limiter,
    the circuit), with its effect checked; afterwards each script's cluster variant is in some master's script
    cache, so none was left out."""
    a, b, c = h.convs[:3]
    s = h.settings

    async def conversation_writes(ingress: Ingress) -> list[Any]:
        updated = await ingress.update_conversation(a, metadata={"team": "x"})
        hooked = await ingress.set_webhook_url(a, "https://example.com/hook")
        first = await ingress.enqueue(conversation_id=a, input="one", model=None, instructions=None,
                                      metadata={}, idempotency_key="evt-1")
        again = await ingress.enqueue(conversation_id=a, input="one", model=None, instructions=None,
                                      metadata={}, idempotency_key="evt-1")
        gone = await ingress.enqueue(conversation_id=a, input="two", model=None, instructions=None,
                                     metadata={}, idempotency_key=None)
        turn = await ingress.get_turn(gone.turn_id)
        assert turn is not None
        cancelled = await ingress.cancel(turn)
        allowed, _ = await scripts.RATE_LIMIT.run_async(ingress.client, [KEYS.rate_limit("k1")], [1000, 5])
        return [updated and updated["metadata"], hooked, first.status, again.status, cancelled, allowed]

    assert on_ingress(s, conversation_writes) == [{"team": "x"}, True, EnqueueStatus.ok,
                                                  EnqueueStatus.duplicate, True, 1]
    assert h.drainer.drain(a).turns == 1  # claim, record, publish, finish (and the cancelled one skipped)
    assert [e["type"] for e in h.events(a)][-1] == "turn.completed"

    bad = h.post(b, "bad", emulator_fault="bad_request").turn_id
    h.drainer.drain(b)
    assert h.mailbox.load(b, bad).status is TurnStatus.failed
    h.mailbox.dead_letter(b, bad)
    letters = DeadLetters(h.client, KEYS)
    letter = letters.find(bad)
    assert letter is not None and letters.requeue(letter) is True  # requeue.lua
    claim = h.mailbox.claim(b)
    assert claim.token and claim.started and claim.started.turn_id == bad
    h.mailbox.hand_back(b, claim.token, bad)  # hand_back.lua
    assert h.mailbox.release(b, claim.token) is True  # release.lua: work is left

    h.post(c, "use a tool")
    claim = h.mailbox.claim(c)
    assert claim.token and claim.started
    records = ToolRecords(h.mailbox, c, claim.token, claim.started.turn)
    server_call = Call(call_id="call_0", name="lookup", arguments="{}", round=0, runs="server")
    records.calls(ToolState(calls=[server_call]), [server_call])  # record_publish.lua
    records.results({"call_0": "done"}, completed={"call_id": "call_0", "name": "lookup"})  # tool_results.lua
    records.pause([Call(call_id="call_1", name="lookup", arguments="{}", round=0, runs="bot")])  # pause.lua
    outputs = on_ingress(s, lambda i: submit_tool_outputs(i.client, KEYS, s, conv=c,
                                                          turn_id=claim.started.turn_id,
                                                          outputs={"call_1": "42"}))  # tool_outputs.lua
    assert outputs.status == "ok"
    assert h.client.hget(KEYS.tool_results(c, claim.started.turn_id), "call_1") == "42"

    h.client.set(KEYS.lease(c), "7", px=5000)
    h.drainer.keeper.hold(c, "7")
    h.drainer.keeper.hold(a, "8")  # not held in Redis: the beat finds it lost
    h.drainer.keeper.beat()  # heartbeat.lua, pipelined across shards
    assert not h.drainer.keeper.lost(c) and h.drainer.keeper.lost(a)
    resumed = h.mailbox.next_turn(c, "7")  # next_turn.lua: the tool turn, queued again by its outputs
    assert resumed and resumed.turn_id == claim.started.turn_id and resumed.resumed
    again = h.mailbox.interrupt(c, "7", resumed.turn_id)  # interrupt.lua: back at the head, started again
    assert again.next and again.next.turn_id == resumed.turn_id and not again.next.resumed

    woken: list[str] = []
    result = reap(h.mailbox, woken.append, now_ms=int(time.time() * 1000) + 3_600_000)  # rekick, forget
    assert result.forgotten >= 1 and b not in woken  # b is ready with a recent hint: no second wake-up

    circuit = Circuit(h.client, KEYS, s.model_copy(update={"circuit_min_calls": 2}))
    circuit.record("m", ok=False)
    circuit.record("m", ok=False)
    circuit.sync()  # circuit.lua
    assert circuit.gate("m") > 0

    async def webhook_and_delete(ingress: Ingress) -> tuple[int, int]:
        store = WebhookStore(ingress.client, KEYS)
        # A MULTI over the two {webhooks} keys: one slot, so the cluster pipeline can run it as a transaction.
        await store.schedule(Record(id="d1", conversation_id=a, turn_id="t", type="turn.completed",
                                    payload="{}"), due_at=1.0)
        claimed = await store.claim_due(now=time.time(), lease_s=30, count=10)  # webhook_claim.lua
        cancelled = await ingress.delete_conversation(b, None)  # delete.lua
        return len(claimed), cancelled

    h.post(b, "waiting")
    claimed, cancelled = on_ingress(s, webhook_and_delete)
    assert claimed == 1 and cancelled == 1 and not h.client.exists(KEYS.conversation(b))
    cached = [False] * len(scripts.ALL)
    for node in h.client.get_primaries():  # type: ignore[attr-defined]
        found = node_client(node).script_exists(*(script.cluster_sha for script in scripts.ALL))
        cached = [x or y for x, y in zip(cached, found, strict=True)]
    assert [script.name for script, ran in zip(scripts.ALL, cached, strict=True) if not ran] == []


def test_the_api_reads_work_across_shards(h: ClusterHarness) -> None:
    """What the API reads besides scripts (a conversation's record and owner, its queue, the backlog and the
    circuits for /metrics, a turn) answers on the cluster, pipelines spanning slots included."""
    conv = h.convs[0]
    turn_id = h.post(conv, "hi").turn_id
    h.client.hset(KEYS.stats, mapping={"queued": 1, "updated_at": 1.0})
    Circuit(h.client, KEYS, h.settings).record("m", ok=True)

    async def reads(ingress: Ingress) -> list[Any]:
        record = await ingress.conversation(conv)
        turn = await ingress.get_turn(turn_id, tenant="default")
        state = await ingress.queue_state(conv)
        return [record and record["id"], await ingress.owner(conv), turn and turn.status, state.pending,
                (await ingress.backlog())["queued"], await ingress.open_circuits()]

    time.sleep(0.4)  # the circuit's report thread has written the model's health
    assert on_ingress(h.settings, reads) == [conv, "default", TurnStatus.queued, 1, 1.0, {"m": False}]
