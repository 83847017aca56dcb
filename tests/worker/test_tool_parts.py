"""The tool loop's pure decisions and the runner of server tools, on their own (no Redis, no upstream)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from parley.worker.tools.context import ToolContext
from parley.worker.tools.loop import (
    Answered,
    Call,
    NotSent,
    Pending,
    StillRunning,
    ToolState,
    calls_in,
    outputs_input,
    read_items,
)
from parley.worker.tools.registry import ToolRegistry, _arguments, _parameters
from parley.worker.tools.registry import Tool as ToolDef
from parley.worker.tools.runner import Outcome, run_calls


def user(text: str, id_: str = "msg_u") -> dict[str, object]:
    return {"type": "message", "id": id_, "role": "user", "content": [{"type": "input_text", "text": text}]}


def call(call_id: str, name: str = "clock", id_: str | None = None) -> dict[str, object]:
    return {"type": "function_call", "id": id_ or f"fc_{call_id}", "call_id": call_id, "name": name,
            "arguments": "{}"}


def output(call_id: str) -> dict[str, object]:
    return {"type": "function_call_output", "id": f"fco_{call_id}", "call_id": call_id, "output": "x"}


def assistant(text: str, id_: str = "msg_a") -> dict[str, object]:
    return {"type": "message", "id": id_, "role": "assistant", "content": [{"type": "output_text", "text": text}]}


class TestReadItems:
    def test_nothing_stored(self) -> None:
        """Neither our input nor anything after it: safe to send the turn's input."""
        assert isinstance(read_items([user("an earlier turn"), assistant("old")], "mine"), NotSent)

    def test_input_stored_answer_not_yet(self) -> None:
        assert isinstance(read_items([user("mine")], "mine"), StillRunning)

    def test_calls_without_outputs_are_pending_in_order(self) -> None:
        """Two parallel calls stored by the first round: both need outputs, in one request."""
        view = read_items([user("mine"), call("call_a"), call("call_b")], "mine")
        assert isinstance(view, Pending) and [c["call_id"] for c in view.calls] == ["call_a", "call_b"]
        assert view.rounds_stored == 1

    def test_a_second_round_is_pending_after_the_first_is_answered(self) -> None:
        items = [user("mine"), call("call_a"), output("call_a"), call("call_b")]
        view = read_items(items, "mine")
        assert isinstance(view, Pending) and [c["call_id"] for c in view.calls] == ["call_b"]
        assert view.rounds_stored == 2

    def test_outputs_stored_and_no_answer_yet_is_still_running(self) -> None:
        """Outputs are appended with the response that read them: they alone mean it is still running."""
        assert isinstance(read_items([user("mine"), call("call_a"), output("call_a")], "mine"), StillRunning)

    def test_the_final_answer(self) -> None:
        items = [user("mine"), call("call_a"), output("call_a"), assistant("done", "msg_z")]
        assert read_items(items, "mine") == Answered(text="done", last_item_id="msg_z")

    def test_a_message_beside_calls_does_not_end_the_turn(self) -> None:
        """A response may say something and call tools: the calls still need their outputs."""
        view = read_items([user("mine"), assistant("let me check"), call("call_a")], "mine")
        assert isinstance(view, Pending)


def test_calls_run_on_the_server_unless_only_the_bot_has_the_tool() -> None:
    output_items = [{"type": "message"}, call("call_a", "clock"), call("call_b", "lookup_order")]
    output_items.append(call("call_c", "made_up"))
    calls = calls_in(output_items, round_=2, server_tools={"clock"}, bot_tools={"lookup_order", "clock"})
    assert [(c.call_id, c.runs, c.round) for c in calls] == [
        ("call_a", "server", 2), ("call_b", "bot", 2), ("call_c", "server", 2)]  # made up: an error output
    assert Call.of(calls[0].record()) == calls[0]


def test_pending_is_the_last_round_and_outputs_follow_its_order() -> None:
    state = ToolState(calls=[Call("c1", "t", "{}", 0, "server"), Call("c2", "t", "{}", 1, "server"),
                             Call("c3", "t", "{}", 1, "bot")], results={"c2": "two"})
    assert [c.call_id for c in state.pending()] == ["c2", "c3"]
    assert [c.call_id for c in state.missing()] == ["c3"]
    state.results["c3"] = "three"
    assert outputs_input(state.pending(), state.results) == [
        {"type": "function_call_output", "call_id": "c2", "output": "two"},
        {"type": "function_call_output", "call_id": "c3", "output": "three"}]


def _registry(*functions: object, timeout_s: float = 1.0) -> ToolRegistry:
    registry = ToolRegistry()
    for fn in functions:
        model, context = _arguments(fn)  # type: ignore[arg-type]
        registry.add(ToolDef(name=fn.__name__, description="", parameters=_parameters(model),  # type: ignore[attr-defined]
                             function=fn, timeout_s=timeout_s, arguments_model=model,  # type: ignore[arg-type]
                             context_param=context))
    return registry


def _context(c: Call) -> ToolContext:
    return ToolContext(turn_id="turn_1", conversation_id="conv_1", call_id=c.call_id, metadata={"team": "T1"})


def test_calls_run_in_parallel_and_each_is_reported_as_it_ends() -> None:
    """Two tools that each take 0.3 s finish in about 0.3 s together; both outcomes are reported."""
    def slow(n: int) -> int:
        time.sleep(0.3)
        return n * 2

    registry, seen = _registry(slow), []
    began = time.monotonic()
    outcomes = run_calls([Call("a", "slow", '{"n": 1}', 0, "server"), Call("b", "slow", '{"n": 2}', 0, "server")],
                         registry, _context, seen.append)
    assert time.monotonic() - began < 0.55
    assert [o.output for o in outcomes] == ["2", "4"] and len(seen) == 2


def test_failures_become_error_outputs_for_the_model() -> None:
    """A tool that raises, one that hangs past its timeout, an unknown name and bad arguments each give an
    error output (the turn goes on), never an exception."""
    def boom() -> str:
        raise RuntimeError("the database is down")

    release = threading.Event()

    def hang() -> str:
        release.wait(5)
        return "late"

    def typed(n: int) -> int:
        return n

    registry = _registry(boom, hang, typed, timeout_s=0.3)
    calls = [Call("a", "boom", "{}", 0, "server"), Call("b", "hang", "{}", 0, "server"),
             Call("c", "nope", "{}", 0, "server"), Call("d", "typed", '{"n": "not a number"}', 0, "server")]
    began = time.monotonic()
    outcomes: list[Outcome] = run_calls(calls, registry, _context, lambda o: None)
    release.set()
    assert time.monotonic() - began < 1.0
    errors = [json.loads(o.output)["error"] for o in outcomes]
    assert "RuntimeError: the database is down" in errors[0] and "timed out after 0.3 s" in errors[1]
    assert "no tool named 'nope'" in errors[2] and "bad arguments" in errors[3]
    assert all(o.error for o in outcomes)


def test_async_tools_and_the_context() -> None:
    """An async tool runs too (within its timeout); a parameter typed ToolContext gets the call's context,
    with an idempotency key from the turn and call ids, and is not in the schema the model sees."""
    async def greet(name: str, ctx: ToolContext) -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"hello": name, "key": ctx.idempotency_key, "team": ctx.metadata["team"]}

    registry = _registry(greet)
    assert "ctx" not in json.dumps(registry.tools["greet"].parameters)
    [outcome] = run_calls([Call("call_9", "greet", '{"name": "Ada"}', 0, "server")], registry, _context,
                          lambda o: None)
    assert json.loads(outcome.output) == {"hello": "Ada", "key": "turn_1:call_9", "team": "T1"}


def test_offered_tools_follow_the_turns_choice() -> None:
    def a() -> str:
        return "a"

    def b() -> str:
        return "b"

    registry = _registry(a, b)
    assert [t.name for t in registry.offered(None)] == ["a", "b"]
    assert registry.offered(False) == [] and [t.name for t in registry.offered(["b", "zz"])] == ["b"]


@pytest.mark.parametrize("value", [["x"], {"k": 1}, 3])
def test_non_text_results_are_sent_as_json(value: object) -> None:
    def give() -> object:
        return value

    [outcome] = run_calls([Call("c", "give", "{}", 0, "server")], _registry(give), _context, lambda o: None)
    assert json.loads(outcome.output) == value
