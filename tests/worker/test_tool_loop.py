"""The tool loop in the drain, in-process: real Redis, the emulator's function calling through the real SDK,
server tools declared with ``@tool`` in a registry of the test's own."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from drain_support import make_drainer, run_async, run_ingress

from parley.worker.local.emulator import EmulatorServer
from parley.worker.messages import TurnStatus
from parley.worker.run.drain import Drainer
from parley.worker.run.upstream import Upstream, make_client
from parley.worker.settings import Settings
from parley.worker.store.ingress import Ingress
from parley.worker.tools.registry import Tool, ToolRegistry, _arguments, _parameters


class Tools:
    """A registry of test tools that counts each tool's runs."""

    def __init__(self) -> None:
        self.registry = ToolRegistry()
        self.runs: Counter[str] = Counter()
        self.release = threading.Event()
        self.add(self.clock)
        self.add(self.add_numbers, name="add")
        self.add(self.boom)
        self.add(self.hang, timeout_s=0.3)

    def add(self, fn: Any, *, name: str | None = None, timeout_s: float = 5.0) -> None:
        model, context = _arguments(fn)
        self.registry.add(Tool(name=name or fn.__name__, description=fn.__doc__ or "", function=fn,
                               parameters=_parameters(model), timeout_s=timeout_s, arguments_model=model,
                               context_param=context))

    def clock(self, tz: str = "UTC") -> str:
        """The time."""
        self.runs["clock"] += 1
        return f"12:00 {tz}"

    def add_numbers(self, a: int, b: int) -> int:
        """a + b."""
        self.runs["add"] += 1
        return a + b

    def boom(self) -> str:
        """Always fails."""
        self.runs["boom"] += 1
        raise RuntimeError("the database is down")

    def hang(self) -> str:
        """Never answers in time."""
        self.runs["hang"] += 1
        self.release.wait(5)
        return "late"


class Harness:
    def __init__(self, settings: Settings, client: redis.Redis, emulator: EmulatorServer) -> None:
        self.settings, self.emulator, self.tools = settings, emulator, Tools()
        self.upstream = Upstream(make_client(settings, concurrency=8), settings)
        self.drainer: Drainer = make_drainer(settings, client, self.upstream, registry=self.tools.registry)
        self.mailbox = self.drainer.mailbox
        self.conv = self.upstream.client.conversations.create().id
        self._ingress(lambda i: i.register_conversation(self.conv, created_at=1, metadata={}, key=None))

    def _ingress(self, action: Any) -> Any:
        return run_ingress(self.settings, action)

    def post(self, text: str) -> str:
        result = self._ingress(lambda i: i.enqueue(conversation_id=self.conv, input=text, model=None,
                                                   instructions=None, metadata={}, idempotency_key=None))
        return str(result.turn_id)

    def turn(self, turn_id: str) -> Any:
        return self.mailbox.load(self.conv, turn_id)

    def items(self) -> list[dict[str, Any]]:
        return self.emulator.store.snapshot_items(self.conv)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(e[1]["data"]) for e in self.mailbox.client.xrange(self.mailbox.keys.events(self.conv))]


@pytest.fixture(name="h")
def _harness(settings: Settings, redis_client: redis.Redis, emulator: EmulatorServer) -> Iterator[Harness]:
    harness = Harness(settings, redis_client, emulator)
    yield harness
    harness.tools.release.set()


def kinds(items: list[dict[str, Any]]) -> list[str]:
    return [item.get("role") or item["type"] if item["type"] == "message" else item["type"] for item in items]


def assert_every_call_answered(items: list[dict[str, Any]]) -> None:
    calls = [i["call_id"] for i in items if i["type"] == "function_call"]
    outputs = [i["call_id"] for i in items if i["type"] == "function_call_output"]
    assert sorted(calls) == sorted(outputs) and len(set(outputs)) == len(outputs)


def test_two_parallel_server_tools_then_the_answer(h: Harness) -> None:
    """The model calls two server tools at once: both run once, in one round; the conversation holds the user
    message, both calls, both outputs (in one request) and the answer; the events say so in order."""
    turn_id = h.post('time and sum? [call clock {"tz": "Asia/Tokyo"}] [call add {"a": 2, "b": 3}]')
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.completed, turn.error
    assert "clock=12:00 Asia/Tokyo" in turn.output_text and "add=5" in turn.output_text
    assert kinds(h.items()) == ["user", "function_call", "function_call", "function_call_output",
                                "function_call_output", "assistant"]
    assert h.tools.runs == Counter({"clock": 1, "add": 1})
    assert len(turn.tool_calls) == 2 and len(turn.response_ids) == 2
    sent = [r for r in h.emulator.store.snapshot_requests() if r.conversation_id == h.conv]
    assert len(sent) == 2
    types = [e["type"] for e in h.events() if e["type"] not in ("response.delta",)]
    assert types == ["turn.queued", "turn.started", "tool.called", "tool.called", "tool.completed",
                     "tool.completed", "turn.completed"]


def test_failing_tools_answer_the_model_with_errors_and_the_turn_goes_on(h: Harness) -> None:
    """A tool that raises and one that times out each get an error output; the turn completes with the
    model's answer to them, and the next turn runs (a name nobody implements: tests/worker/test_tool_parts.py)."""
    turn_id = h.post("[call boom] [call hang]")
    after = h.post("and now?")
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.completed
    assert "RuntimeError: the database is down" in turn.output_text and "timed out after 0.3 s" in turn.output_text
    completed = [e for e in h.events() if e["type"] == "tool.completed"]
    assert len(completed) == 2 and all(e.get("error") for e in completed)
    assert h.turn(after).status is TurnStatus.completed
    assert_every_call_answered(h.items())


def test_too_many_rounds_fail_the_turn_and_close_its_calls(h: Harness) -> None:
    """A model that keeps calling past PARLEY_MAX_TOOL_ROUNDS fails the turn ``tool_rounds_exceeded``; its last
    calls get error outputs without a model run, so the conversation's next turn is not refused."""
    h.drainer.mailbox.settings = h.settings.model_copy(update={"max_tool_rounds": 2})
    turn_id = h.post("[call clock {} rounds=9]")
    after = h.post("still there?")
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status is TurnStatus.failed and turn.error.type == "tool_rounds_exceeded"
    assert h.tools.runs["clock"] == 2
    assert_every_call_answered(h.items())
    assert h.turn(after).status is TurnStatus.completed


def test_a_plain_turn_does_not_enter_the_loop_without_tools(settings: Settings, redis_client: redis.Redis,
                                                            emulator: EmulatorServer) -> None:
    """With no server tools and none in the turn, the request carries no tools at all (the plain path)."""
    upstream = Upstream(make_client(settings, concurrency=2), settings)
    drainer = make_drainer(settings, redis_client, upstream, registry=ToolRegistry())
    conv = upstream.client.conversations.create().id

    async def post() -> str:
        client = redis.asyncio.Redis.from_url(settings.redis_url_required, decode_responses=True)
        ingress = Ingress(client, settings)
        await ingress.register_conversation(conv, created_at=1, metadata={}, key=None)
        result = await ingress.enqueue(conversation_id=conv, input="hi [call clock]", model=None,
                                       instructions=None, metadata={}, idempotency_key=None)
        await client.aclose()
        return str(result.turn_id)

    turn_id = asyncio.run(post())
    drainer.drain(conv)
    assert drainer.mailbox.load(conv, turn_id).status is TurnStatus.completed
    [request] = [r for r in emulator.store.snapshot_requests() if r.conversation_id == conv]
    assert not request.tools


LOOKUP = {"type": "function", "name": "lookup_order", "description": "Find an order.",
          "parameters": {"type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]}}


def post_with(h: Harness, message: str, **request: Any) -> str:
    result = h._ingress(lambda i: i.enqueue(conversation_id=h.conv, input=message, model=None, instructions=None,
                                            metadata={}, idempotency_key=None, request=request))
    return str(result.turn_id)


def outputs_for(h: Harness, turn_id: str, outputs: dict[str, str]) -> Any:
    from parley.worker.store.tool_outputs import submit_tool_outputs

    return run_async(h.settings, lambda client: submit_tool_outputs(
        client, h.mailbox.keys, h.settings, conv=h.conv, turn_id=turn_id, outputs=outputs))


def test_a_bot_tool_pauses_the_turn_until_its_outputs_come(h: Harness) -> None:
    """A call of the turn's own tool (no server tool has it) stops the turn in ``requires_action`` with the
    call in ``required_action`` and the lease given back; the next turn waits behind it. A wrong call id is
    refused; the right outputs queue it again, the drain finishes it with the outputs upstream, once; the
    same outputs posted again change nothing; then the next turn runs."""
    turn_id = post_with(h, 'where is A-17? [call lookup_order {"number": "A-17"}]', tools=[LOOKUP])
    after = h.post("thanks")
    h.drainer.drain(h.conv)
    waiting = h.turn(turn_id)
    assert waiting.status is TurnStatus.requires_action
    [call] = waiting.required_action["tool_calls"]
    assert call["name"] == "lookup_order" and json.loads(call["arguments"]) == {"number": "A-17"}
    assert h.turn(after).status is TurnStatus.queued
    assert not h.mailbox.client.exists(h.mailbox.keys.lease(h.conv))
    assert h.drainer.drain(h.conv).turns == 0  # a wake-up meanwhile leaves it waiting
    assert outputs_for(h, turn_id, {"call_nope": "x"}).status == "unknown_call"
    assert outputs_for(h, turn_id, {}).status == "missing_call"
    accepted = outputs_for(h, turn_id, {call["call_id"]: '{"status": "shipped"}'})
    assert accepted.status == "ok" and accepted.need_wakeup
    h.drainer.drain(h.conv)
    done = h.turn(turn_id)
    assert done.status is TurnStatus.completed and 'lookup_order={"status": "shipped"}' in done.output_text
    assert outputs_for(h, turn_id, {call["call_id"]: '{"status": "shipped"}'}).status == "unchanged"
    assert h.turn(after).status is TurnStatus.completed
    assert_every_call_answered(h.items())
    types = [e["type"] for e in h.events() if e["turn_id"] == turn_id]
    assert "turn.requires_action" in types and types[-1] == "turn.completed"


def test_a_bot_that_never_answers_fails_the_turn_and_the_conversation_goes_on(h: Harness) -> None:
    """Past PARLEY_TOOL_OUTPUT_TIMEOUT_S the waiting call gets an error output (stored without a model run),
    the turn fails ``tool_outputs_timeout``, and the next turn completes."""
    h.drainer.mailbox.settings = h.settings.model_copy(update={"tool_output_timeout_s": 0.3})
    turn_id = post_with(h, "[call lookup_order]", tools=[LOOKUP])
    after = h.post("hello?")
    h.drainer.drain(h.conv)
    assert h.turn(turn_id).status is TurnStatus.requires_action
    import time

    time.sleep(0.4)
    h.drainer.drain(h.conv)
    failed = h.turn(turn_id)
    assert failed.status is TurnStatus.failed and failed.error.type == "tool_outputs_timeout"
    assert_every_call_answered(h.items())
    assert h.turn(after).status is TurnStatus.completed


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
          "required": ["city", "temp"], "additionalProperties": False}


@pytest.mark.parametrize("marker", ["", "[bad_json]", "[wrong_json]"])
def test_json_replies_are_parsed_and_validated(h: Harness, marker: str) -> None:
    """With text.format json_schema the turn carries ``output_parsed`` valid against the schema; a reply that
    does not parse or does not validate fails the turn ``invalid_json_output``."""
    turn_id = post_with(h, f"weather {marker}", text={"format": {"type": "json_schema", "name": "weather",
                                                                 "schema": SCHEMA, "strict": True}})
    h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    if not marker:
        assert turn.status is TurnStatus.completed and set(turn.output_parsed) == {"city", "temp"}
        completed = [e for e in h.events() if e["type"] == "turn.completed"]
        assert completed[0]["output_parsed"] == turn.output_parsed
    else:
        assert turn.status is TurnStatus.failed and turn.error.type == "invalid_json_output"
