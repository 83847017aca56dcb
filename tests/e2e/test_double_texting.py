"""Double texting end to end: five quick messages under each policy, an interrupt of a slow reply, of a running
server tool and of calls waiting for their bot, with real worker processes, Redis, the API on uvicorn and the
emulator through the real SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from conftest import wait_until
from stack import workers
from texting_support import (
    MESSAGES,
    burst,
    conversation,
    events,
    ids,
    one_terminal_event_each,
    post,
    requests_of,
    settle,
    terminal_events,
    turn,
)

from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings

pytestmark = pytest.mark.slow

SUPPORT = Path(__file__).resolve().parents[1] / "support"
def assert_reposts_return_the_originals(http: httpx.Client, conv: str, turns: list[str]) -> None:
    """Idempotency under every policy: each key posted again after the turns ended gives back its turn with
    the status it ended in (completed, merged, superseded, interrupted), never a new turn nor a 409."""
    for n, turn_id in enumerate(turns):
        again = post(http, conv, MESSAGES[n], idempotency_key=f"k{n}")
        assert again.status_code == 200, again.text
        assert again.json()["id"] == turn_id and again.json()["status"] == turn(http, turn_id)["status"]


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


def test_enqueue_answers_five_messages_in_order(settings: Settings, http: httpx.Client, emulator: EmulatorServer,
                                                redis_client: redis.Redis) -> None:
    """``enqueue`` (today's default): five turns, five requests, in the order they were posted."""
    with workers(settings, 1, concurrency=8):
        conv, posted = burst(http)
        turns = ids(posted)
        records = settle(http, turns)
        assert_reposts_return_the_originals(http, conv, turns)
    assert [r["status"] for r in records] == ["completed"] * 5
    assert [r.input_texts[-1] for r in requests_of(emulator, conv)] == MESSAGES
    one_terminal_event_each(redis_client, conv, turns)


def test_merge_sends_the_five_messages_as_one_request(settings: Settings, http: httpx.Client,
                                                      emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """``merge`` with a 500 ms debounce: one upstream request whose input holds the five texts in order; the
    fifth turn answers, the other four end ``turn.merged`` naming it, and its record lists them."""
    with workers(settings, 1, concurrency=8):
        conv, posted = burst(http, double_texting="merge", debounce_ms=500)
        turns = ids(posted)
        records = settle(http, turns)
        assert_reposts_return_the_originals(http, conv, turns)
    requests = requests_of(emulator, conv)
    assert len(requests) == 1 and requests[0].input_texts == MESSAGES
    answer = turns[-1]
    assert [r["status"] for r in records] == ["merged"] * 4 + ["completed"]
    assert all(r["answered_by"] == answer for r in records[:4])
    assert records[-1]["answers"] == turns[:4]
    ended = one_terminal_event_each(redis_client, conv, turns)
    assert all(ended[t]["type"] == "turn.merged" and ended[t]["into"] == answer for t in turns[:4])
    assert ended[answer]["type"] == "turn.completed"
    items = emulator.store.snapshot_items(conv)
    assert [i["role"] for i in items] == ["user"] * 5 + ["assistant"]


def test_latest_answers_only_the_fifth(settings: Settings, http: httpx.Client, emulator: EmulatorServer,
                                       redis_client: redis.Redis) -> None:
    """``latest`` with a 500 ms debounce: one answer, to the fifth message; the other four are superseded,
    each by the next one (when a turn is superseded, the one that will answer is not known yet: the chain of
    ``answered_by`` ends at it)."""
    with workers(settings, 1, concurrency=8):
        conv, posted = burst(http, double_texting="latest", debounce_ms=500)
        turns = ids(posted)
        records = settle(http, turns)
        assert_reposts_return_the_originals(http, conv, turns)
    assert [r.input_texts for r in requests_of(emulator, conv)] == [[MESSAGES[-1]]]
    assert [r["status"] for r in records] == ["superseded"] * 4 + ["completed"]
    ended = one_terminal_event_each(redis_client, conv, turns)
    assert [ended[t]["type"] for t in turns] == ["turn.superseded"] * 4 + ["turn.completed"]
    assert [ended[t]["answered_by"] for t in turns[:4]] == turns[1:]
    assert [r["answered_by"] for r in records[:4]] == turns[1:]


def test_reject_accepts_the_first_and_refuses_the_others(settings: Settings, http: httpx.Client,
                                                          emulator: EmulatorServer,
                                                          redis_client: redis.Redis) -> None:
    """``reject``: the first message is accepted, the four posted while it waits or runs get 409
    ``conversation_busy`` and nothing of them is stored; re-posting the first one's key returns it."""
    # The first one runs 1.5 s upstream: the others must come while it runs (an instant reply could end it
    # before the fifth post, which is then rightly accepted; that happened on a loaded machine).
    emulator.config.latency_ms = (1500, 1500)
    with workers(settings, 1, concurrency=8):
        conv, responses = burst(http, double_texting="reject")
        again = post(http, conv, MESSAGES[0], idempotency_key="k0")
        first = ids(responses[:1])
        settle(http, first)
        assert_reposts_return_the_originals(http, conv, first)
    assert [r.status_code for r in responses[1:]] == [409] * 4
    assert {r.json()["error"]["type"] for r in responses[1:]} == {"conversation_busy"}
    assert again.status_code == 200 and again.json()["id"] == first[0]
    assert [e["type"] for e in events(redis_client, conv)].count("turn.queued") == 1
    assert [r.input_texts for r in requests_of(emulator, conv)] == [[MESSAGES[0]]]


@pytest.mark.parametrize("close_stops", [False, True], ids=["reply-goes-on", "reply-stops"])
def test_interrupt_stops_a_slow_reply_and_answers_both(close_stops: bool, settings: Settings, http: httpx.Client,
                                                       emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """``interrupt`` with a slow upstream (2 s): the first response's stream is closed once it is writing; its
    items are taken back (no partial assistant message is left), and one answer covers both inputs. Both ways
    upstream may take the closed stream: the reply goes on and is stored (then deleted), or it stops there."""
    emulator.config.delta_interval_ms = 20
    emulator.config.close_stops_text = close_stops
    conv = conversation(http, double_texting="interrupt")
    with workers(settings, 1, concurrency=8):
        slow = post(http, conv, "tell me a long story", idempotency_key="story",
                    metadata={"emulator_fault": "latency=2000;ttft=100"}).json()["id"]
        wait_until(lambda: any(e["type"] == "response.delta" for e in events(redis_client, conv)), timeout_s=10,
                   message="the first reply writing")
        newer = post(http, conv, "actually, make it short").json()["id"]
        records = settle(http, [slow, newer])
        again = post(http, conv, "tell me a long story", idempotency_key="story",
                     metadata={"emulator_fault": "latency=2000;ttft=100"})
        assert again.status_code == 200 and again.json()["status"] == "interrupted"  # the original turn
    assert [r["status"] for r in records] == ["interrupted", "completed"]
    assert records[0]["answered_by"] == newer and records[1]["answers"] == [slow]
    requests = requests_of(emulator, conv)
    assert len(requests) == 2 and requests[1].input_texts == ["tell me a long story", "actually, make it short"]
    assert requests[0].ended_at is not None and requests[0].ended_at < requests[1].started_at
    assert requests[0].status == ("failed" if close_stops else "completed")
    items = emulator.store.snapshot_items(conv)
    assert [i["role"] for i in items] == ["user", "user", "assistant"]
    assert [e["type"] for e in terminal_events(redis_client, conv)] == ["turn.interrupted", "turn.completed"]


def test_interrupt_while_a_server_tool_runs(settings: Settings, http: httpx.Client, emulator: EmulatorServer,
                                            redis_client: redis.Redis, tmp_path: Path) -> None:
    """``interrupt`` while a server tool runs: its call never stays upstream without an output, the newer
    message is answered with the first, and the conversation's next turn completes."""
    tooled = settings.model_copy(update={"tools": ["e2e_tools"]})
    env = {"PYTHONPATH": str(SUPPORT), "E2E_TOOL_LOG": str(tmp_path / "runs.jsonl")}
    conv = conversation(http, double_texting="interrupt")
    with workers(tooled, 1, concurrency=8, extra_env=env):
        first = post(http, conv, 'wait [call nap {"seconds": 1.5}]').json()["id"]
        wait_until(lambda: any(e["type"] == "tool.called" for e in events(redis_client, conv)), timeout_s=10,
                   message="the tool running")
        newer = post(http, conv, "never mind").json()["id"]
        records = settle(http, [first, newer])
        after = post(http, conv, "and now?").json()["id"]
        settle(http, [after])
    assert [r["status"] for r in records] == ["interrupted", "completed"]
    assert turn(http, after)["status"] == "completed"
    items = emulator.store.snapshot_items(conv)
    calls = {i["call_id"] for i in items if i["type"] == "function_call"}
    outputs = [i["call_id"] for i in items if i["type"] == "function_call_output"]
    assert sorted(calls) == sorted(outputs)


def test_interrupt_while_calls_wait_for_their_bot(settings: Settings, http: httpx.Client,
                                                  emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """``interrupt`` while a turn waits for its bot's tool outputs (``requires_action``): the waiting call is
    taken back upstream (no call without an output), the newer message is answered, the next turn completes."""
    lookup = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}},
              "strict": False}
    conv = conversation(http, double_texting="interrupt")
    with workers(settings, 1, concurrency=8):
        first = post(http, conv, "look it up [call lookup {}]", tools=[lookup]).json()["id"]
        wait_until(lambda: turn(http, first)["status"] == "requires_action", timeout_s=10,
                   message="the bot's call")
        newer = post(http, conv, "forget it").json()["id"]
        records = settle(http, [first, newer])
        after = post(http, conv, "hello again").json()["id"]
        settle(http, [after])
    assert [r["status"] for r in records] == ["interrupted", "completed"]
    assert turn(http, after)["status"] == "completed"
    items = emulator.store.snapshot_items(conv)
    assert [i["type"] for i in items if i["type"].startswith("function")] == []
    assert [i["role"] for i in items] == ["user", "user", "assistant", "user", "assistant"]
