"""The drain loop in-process, against a real Redis and the emulator through the real SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from worker.drain import Drainer
from worker.ingress import Ingress
from worker.lease import LeaseKeeper
from worker.local.emulator import EmulatorServer
from worker.mailbox import Mailbox
from worker.messages import TurnStatus
from worker.policy import RetryPolicy
from worker.settings import Settings
from worker.upstream import Upstream, make_client


class Harness:
    def __init__(self, settings: Settings, client: redis.Redis, emulator: EmulatorServer) -> None:
        self.settings = settings
        self.mailbox = Mailbox(client, settings)
        self.emulator = emulator
        self.woken: list[str] = []
        self.upstream = Upstream(make_client(settings, concurrency=4), settings)
        self.drainer = Drainer(self.mailbox, self.upstream,
                               LeaseKeeper(client, self.mailbox.keys, ttl_ms=settings.lease_ttl_ms,
                                           interval_ms=settings.heartbeat_interval_ms),
                               RetryPolicy(settings.max_attempts, settings.backoff_base_s, settings.backoff_max_s),
                               fairness_budget=settings.fairness_budget, wake=self.woken.append)
        self.conv = self.upstream.client.conversations.create().id
        self._ingress(lambda i: i.register_conversation(self.conv, created_at=1, metadata={}, key=None))

    def _ingress(self, action):  # type: ignore[no-untyped-def]
        async def go():  # type: ignore[no-untyped-def]
            client = redis.asyncio.Redis.from_url(self.settings.redis_url_required, decode_responses=True)
            try:
                return await action(Ingress(client, self.settings))
            finally:
                await client.aclose()

        return asyncio.run(go())

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


def test_retries_past_the_cap_dead_letter(h: Harness) -> None:
    turn_id = h.post("always 500", emulator_fault="500")
    after = h.post("after")
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.failed and turn.attempts == h.settings.max_attempts
    assert h.mailbox.client.zscore(h.mailbox.keys.dead_letters, f"{h.conv}/{turn_id}") is not None
    assert h.turn(after).status is TurnStatus.completed


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
    token = h.mailbox.claim(h.conv)
    assert token
    assert h.drainer.drain(h.conv).claimed is False
    assert h.emulator.store.snapshot_requests() == []
