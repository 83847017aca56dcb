"""The drain loop in-process, against a real Redis and the emulator through the real SDK."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from drain_support import make_drainer, run_ingress

from parley.worker.local.emulator import EmulatorServer
from parley.worker.messages import TurnStatus
from parley.worker.run.policy import RetryPolicy
from parley.worker.run.upstream import Upstream, make_client, make_clients
from parley.worker.settings import Settings
from parley.worker.store.mailbox import Mailbox


class Harness:
    def __init__(self, settings: Settings, client: redis.Redis, emulator: EmulatorServer) -> None:
        self.settings = settings
        self.mailbox = Mailbox(client, settings)
        self.emulator = emulator
        self.woken: list[str] = []
        self.upstream = Upstream(make_client(settings, concurrency=4), settings)
        self.drainer = make_drainer(settings, client, self.upstream, wake=self.woken.append)
        self.mailbox = self.drainer.mailbox
        self.conv = self.upstream.client.conversations.create().id
        self._ingress(lambda i: i.register_conversation(self.conv, created_at=1, metadata={}, key=None))

    def _ingress(self, action):  # type: ignore[no-untyped-def]
        return run_ingress(self.settings, action)

    def post(self, text: str, **metadata: str) -> str:
        result = self._ingress(lambda i: i.enqueue(conversation_id=self.conv, input=text, model=None,
                                                   instructions=None, metadata=metadata, idempotency_key=None))
        return str(result.turn_id)

    def turn(self, turn_id: str):  # type: ignore[no-untyped-def]
        return self.mailbox.load(self.conv, turn_id)

    def items(self) -> list[tuple[str, str]]:
        return [(i["role"], "".join(p["text"] for p in i["content"]))
                for i in self.emulator.store.snapshot_items(self.conv)]

    def events(self) -> list[dict[str, object]]:
        return [json.loads(e[1]["data"]) for e in self.mailbox.client.xrange(self.mailbox.keys.events(self.conv))]


@pytest.fixture(name="h")
def _harness(settings: Settings, redis_client: redis.Redis, emulator: EmulatorServer) -> Iterator[Harness]:
    yield Harness(settings, redis_client, emulator)


def test_turns_run_in_order_and_publish(h: Harness) -> None:
    ids = [h.post(f"m{i}") for i in range(3)]
    result = h.drainer.drain(h.conv)
    assert result.claimed and result.turns == 3 and not result.rewake
    assert [role for role, _ in h.items()] == ["user", "assistant"] * 3
    assert [text for role, text in h.items() if role == "user"] == ["m0", "m1", "m2"]
    for n, turn_id in enumerate(ids, start=1):
        turn = h.turn(turn_id)
        assert turn.status is TurnStatus.completed and turn.output_text.startswith(f"Reply {n} to: m{n - 1}")
        assert turn.response_id and turn.usage and turn.attempts == 1
    events = h.events()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    completed = [e for e in events if e["type"] == "turn.completed"]
    assert [e["turn_id"] for e in completed] == ids
    for turn_id in ids:
        deltas = "".join(str(e["delta"]) for e in events if e["type"] == "response.delta" and e["turn_id"] == turn_id)
        assert deltas == h.turn(turn_id).output_text


def test_permanent_error_fails_the_turn_and_the_next_one_runs(h: Harness) -> None:
    bad = h.post("bad", emulator_fault="bad_request")
    good = h.post("good")
    h.drainer.drain(h.conv)
    failed = h.turn(bad)
    assert failed.status is TurnStatus.failed and failed.error and failed.error.status_code == 400
    assert failed.attempts == 1
    assert h.turn(good).status is TurnStatus.completed
    assert h.items() == [("user", "good"), ("assistant", h.turn(good).output_text)]
    assert "turn.failed" in [e["type"] for e in h.events()]


def test_a_record_that_does_not_parse_fails_at_once_and_the_next_turn_runs(h: Harness) -> None:
    """A stored turn whose fields do not parse is failed (``invalid_record``, first attempt) instead of raising
    out of the drain at every attempt; the turn behind it runs, and the bad record still loads."""
    bad, good = h.post("bad"), h.post("good")
    h.mailbox.client.hset(h.mailbox.keys.turn(h.conv, bad), "metadata", "[1, 2]")
    h.drainer.drain(h.conv)
    failed = h.turn(bad)
    assert failed.status is TurnStatus.failed and failed.error and failed.error.type == "invalid_record"
    assert "metadata" in failed.error.message and failed.input == "bad" and failed.attempts == 1
    assert h.turn(good).status is TurnStatus.completed
    assert [text for role, text in h.items() if role == "user"] == ["good"]


def test_a_bug_while_running_a_turn_fails_that_turn_only(h: Harness) -> None:
    """An exception that is not an upstream error (a bug in parley) fails that one turn as
    ``internal_error`` naming the exception type; the conversation goes on with the next turn."""
    class Buggy(Upstream):
        def generate(self, turn, **kwargs):  # type: ignore[no-untyped-def]
            if turn.input == "crash":
                raise KeyError("a bug")
            return super().generate(turn, **kwargs)

    drainer = make_drainer(h.settings, h.mailbox.client, Buggy(h.upstream.client, h.settings))
    crash, after = h.post("crash"), h.post("after")
    drainer.drain(h.conv)
    failed = h.turn(crash)
    assert failed.status is TurnStatus.failed and failed.error and failed.error.type == "internal_error"
    assert "KeyError" in failed.error.message and failed.attempts == 1
    assert h.turn(after).status is TurnStatus.completed


def test_retryable_errors_retry_without_duplicates(h: Harness) -> None:
    turn_id = h.post("flaky", emulator_fault="503;times=2")
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.completed and turn.attempts == 3
    assert h.items() == [("user", "flaky"), ("assistant", turn.output_text)]


def test_dropped_stream_recovers_the_response_instead_of_resending(h: Harness) -> None:
    """The stream drops after response.created; the response completes upstream; the retry retrieves it
    by its recorded id, so the user item is appended once."""
    h.emulator.config.delta_interval_ms = 5
    turn_id = h.post("drop me", emulator_fault="drop;times=1")
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.completed and turn.attempts == 2
    assert h.items() == [("user", "drop me"), ("assistant", turn.output_text)]
    assert len(h.emulator.store.snapshot_requests()) == 1


def test_retries_until_the_deadline_then_deadline_exceeded(h: Harness) -> None:
    """A turn whose every attempt gets a 500 is retried until its deadline (here it asked for 1.5 s), then
    fails ``deadline_exceeded`` naming the last error, is dead-lettered, and the next turn runs; each wait
    published ``turn.retrying`` with its cause, attempt and when it retries."""
    turn_id = h._ingress(lambda i: i.enqueue(conversation_id=h.conv, input="always 500", model=None,
                                             instructions=None, metadata={"emulator_fault": "500"},
                                             idempotency_key=None, deadline_s=1.5)).turn_id
    after = h.post("after")
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.failed and turn.error and turn.error.type == "deadline_exceeded"
    assert "http_500" in turn.error.message and turn.attempts >= 3
    assert turn.completed_at is not None and turn.started_at is not None
    # It gives up once the next attempt could not start before the deadline, so it ends at most one longest
    # backoff before it (and not long after it, give or take a busy machine).
    earliest = 1.5 - h.drainer.policy.backoff_max_s
    assert earliest <= turn.completed_at - turn.started_at <= 8.0
    assert h.mailbox.client.zscore(h.mailbox.keys.dead_letters, f"{h.conv}/{turn_id}") is not None
    assert h.turn(after).status is TurnStatus.completed
    retrying = [e for e in h.events() if e["type"] == "turn.retrying"]
    assert len(retrying) == turn.attempts - 1
    assert {e["cause"] for e in retrying} == {"http_500"}
    assert all(float(e["retry_at"]) >= float(e["created_at"]) for e in retrying)


def test_rate_limits_are_waited_out_without_counting_attempts(h: Harness) -> None:
    """Three 429s in a row (Retry-After) are waits, not failed attempts: the turn completes at attempt 1."""
    h.emulator.config.retry_after_s = 0.05
    turn_id = h.post("busy", emulator_fault="429;times=3")
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.completed and turn.attempts == 1
    assert [e["cause"] for e in h.events() if e["type"] == "turn.retrying"] == ["rate_limited"] * 3


def test_fairness_budget_rewakes(h: Harness) -> None:
    h.drainer.fairness_budget = 2
    for i in range(3):
        h.post(f"m{i}")
    first = h.drainer.drain(h.conv)
    assert first.turns == 2 and first.rewake and h.woken == [h.conv]
    second = h.drainer.drain(h.conv)
    assert second.turns == 1 and not second.rewake


def test_busy_conversation_is_left_to_its_owner(h: Harness) -> None:
    h.post("x")
    h.post("y")
    assert h.mailbox.claim(h.conv).started is not None
    assert h.drainer.drain(h.conv).claimed is False
    assert h.emulator.store.snapshot_requests() == []


def test_conversation_locked_waits_without_counting_attempts(h: Harness) -> None:
    """An earlier response still runs on the conversation: wait it out, don't fail, don't count attempts."""
    h.emulator.config.latency_ms = (600, 600)
    h.upstream.client.responses.create(conversation=h.conv, input="earlier", model="m", background=True)
    h.emulator.config.latency_ms = (0, 0)
    turn_id = h.post("mine")
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.completed and turn.attempts == 1
    assert h.emulator.store.overlap_count() >= 1
    assert [text for role, text in h.items() if role == "user"] == ["earlier", "mine"]


def test_crash_before_the_response_id_is_known_is_recovered_from_items(h: Harness) -> None:
    """Attempt 1 reached upstream but died before recording the response id: attempt 2 finds the input and
    the reply after the checkpoint and takes them, sending nothing."""
    turn_id = h.post("only once")
    assert h.mailbox.claim(h.conv).started is not None
    lost = h.upstream.client.responses.create(conversation=h.conv, input="only once", model="m")
    h.mailbox.client.delete(h.mailbox.keys.lease(h.conv))  # the owner died; its lease expired
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.completed and turn.attempts == 2
    assert turn.output_text == lost.output_text
    assert len(h.emulator.store.snapshot_requests()) == 1
    assert h.items() == [("user", "only once"), ("assistant", lost.output_text)]


def test_429_honours_retry_after(h: Harness) -> None:
    import time

    h.emulator.config.retry_after_s = 0.4
    turn_id = h.post("limited", emulator_fault="429;times=1")
    started = time.monotonic()
    h.drainer.drain(h.conv)
    assert time.monotonic() - started >= 0.4
    # A 429 is a wait the provider asked for, not a failed attempt.
    assert h.turn(turn_id).status is TurnStatus.completed and h.turn(turn_id).attempts == 1


def test_hand_back_on_shutdown(h: Harness) -> None:
    """Past the grace period a running turn is handed back: queued again, still first, attempt not counted."""
    h.emulator.config.delta_interval_ms = 30
    first, second = h.post("long"), h.post("next")
    h.drainer.shutdown.request(grace_s=0.05)
    # A shutdown requested before the drain takes nothing, and passes the conversation on.
    assert h.drainer.drain(h.conv).turns == 0 and h.woken == [h.conv]
    h.drainer.shutdown = type(h.drainer.shutdown)()
    import threading

    timer = threading.Timer(0.1, h.drainer.shutdown.request, kwargs={"grace_s": 0.0})
    timer.start()
    result = h.drainer.drain(h.conv)
    timer.join()
    assert result.rewake and h.woken == [h.conv, h.conv]
    handed = h.turn(first)
    assert handed.status is TurnStatus.queued and handed.attempts == 0 and handed.response_id
    assert h.mailbox.client.get(h.mailbox.keys.inflight(h.conv)) == first
    h.drainer.shutdown = type(h.drainer.shutdown)()
    h.drainer.drain(h.conv)
    assert h.turn(first).status is TurnStatus.completed and h.turn(second).status is TurnStatus.completed
    assert [text for role, text in h.items() if role == "user"] == ["long", "next"]
    assert len([r for r in h.emulator.store.snapshot_requests() if r.input_texts == ["long"]]) == 1


def test_dead_letters_can_be_listed_requeued_and_dropped(h: Harness) -> None:
    from parley.worker.store.dead_letters import DeadLetters

    h.drainer.policy = RetryPolicy(deadline_s=0.3, max_crashes=3, backoff_base_s=0.01, backoff_max_s=0.05)
    h.emulator.config.p_500 = 1.0  # an outage longer than the turn's deadline
    turn_id = h.post("poison")
    h.drainer.drain(h.conv)
    h.emulator.config.p_500 = 0.0
    letters = DeadLetters(h.mailbox.client, h.mailbox.keys)
    [letter] = letters.list()
    assert letter.turn_id == turn_id and letters.show(letter).status is TurnStatus.failed
    assert letters.requeue(letter) is True
    assert letters.list() == []
    h.drainer.drain(h.conv)
    assert h.turn(turn_id).status is TurnStatus.completed
    assert [role for role, _ in h.items()] == ["user", "assistant"]


@pytest.mark.parametrize("stream", [True, False])
def test_the_request_carries_the_turns_fields(stream: bool, settings: Settings, redis_client: redis.Redis,
                                             emulator: EmulatorServer) -> None:
    h = Harness(settings.model_copy(update={"stream_upstream": stream}), redis_client, emulator)
    result = h._ingress(lambda i: i.enqueue(conversation_id=h.conv, input="hi", model="gpt-test",
                                            instructions="Be brief.", metadata={"channel": "C1"},
                                            idempotency_key=None))
    h.drainer.drain(h.conv)
    turn = h.turn(result.turn_id)
    response = h.upstream.client.responses.retrieve(turn.response_id)
    assert (response.model, response.instructions) == ("gpt-test", "Be brief.")
    assert response.metadata == {"channel": "C1", "parley_turn_id": turn.id}
    assert response.conversation is not None and response.conversation.id == h.conv
    assert h.items()[0] == ("user", "hi")


@pytest.mark.parametrize("stream", [True, False])
def test_the_resolved_request_arrives_upstream(stream: bool, settings: Settings, redis_client: redis.Redis,
                                               emulator: EmulatorServer) -> None:
    """A turn's options, its conversation's defaults and the server's arrive in the body the SDK sends (as
    the emulator recorded it), each field from its layer, while the fields the worker owns stay its own."""
    server = {"temperature": 0.9, "truncation": "auto", "stream": False}
    h = Harness(settings.model_copy(update={"stream_upstream": stream, "default_request": server}), redis_client,
                emulator)
    tool = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
    h._ingress(lambda i: i.update_conversation(h.conv, defaults={
        "model": "gpt-conv", "tools": [tool], "temperature": 0.5, "text": {"verbosity": "low"}}))
    own = {"temperature": 0.1, "tool_choice": "none", "reasoning": {"effort": "low"}, "max_output_tokens": 64,
           "conversation": "conv_elsewhere", "input": "injected", "previous_response_id": "resp_x"}
    result = h._ingress(lambda i: i.enqueue(conversation_id=h.conv, input="hi", model=None, instructions=None,
                                            metadata={}, idempotency_key=None, request=own))
    h.drainer.drain(h.conv)
    assert h.turn(result.turn_id).status is TurnStatus.completed
    [sent] = [r.params for r in h.emulator.store.snapshot_requests() if r.conversation_id == h.conv]
    assert {k: sent.get(k) for k in ("model", "tools", "temperature", "tool_choice", "reasoning", "text",
                                     "max_output_tokens", "truncation")} == {
        "model": "gpt-conv", "tools": [tool], "temperature": 0.1, "tool_choice": "none",
        "reasoning": {"effort": "low"}, "text": {"verbosity": "low"}, "max_output_tokens": 64,
        "truncation": "auto"}
    assert sent["conversation"] == h.conv and "previous_response_id" not in sent
    assert bool(sent.get("stream")) is stream
    assert h.items()[0] == ("user", "hi")


def test_threads_are_spread_evenly_over_the_http_clients(settings: Settings) -> None:
    upstream = Upstream(make_clients(settings, concurrency=100), settings)
    assert len(upstream.clients) == 4
    picked: list[tuple[int, int]] = []

    def pick() -> None:
        first = upstream.client
        picked.append((id(first), id(upstream.client)))

    threads = [threading.Thread(target=pick) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert all(first == again for first, again in picked)  # a thread keeps its client
    assert sorted(Counter(first for first, _ in picked).values()) == [2, 2, 2, 2]


def test_non_streamed_mode(settings: Settings, redis_client: redis.Redis, emulator: EmulatorServer) -> None:
    """Without streaming: same order and results, no deltas, and a crash is still recovered from the items."""
    plain = Harness(settings.model_copy(update={"stream_upstream": False}), redis_client, emulator)
    first, second = plain.post("one"), plain.post("two")
    plain.drainer.drain(plain.conv)
    assert [plain.turn(t).status for t in (first, second)] == [TurnStatus.completed] * 2
    assert plain.turn(first).response_id and plain.turn(first).usage
    assert plain.turn(first).output_text == [text for role, text in plain.items() if role == "assistant"][0]
    assert "response.delta" not in [e["type"] for e in plain.events()]
    assert [text for role, text in plain.items() if role == "user"] == ["one", "two"]
    retried = plain.post("flaky", emulator_fault="500;times=1")
    plain.drainer.drain(plain.conv)
    assert plain.turn(retried).status is TurnStatus.completed and plain.turn(retried).attempts == 2
    assert [text for role, text in plain.items() if role == "user"] == ["one", "two", "flaky"]
