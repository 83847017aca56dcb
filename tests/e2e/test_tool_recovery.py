"""The tool loop with real worker processes: two server tools in parallel, 50 conversations x 3 turns with two
workers, and a SIGKILL at each point of the loop (API on uvicorn, Redis, the emulator through the real SDK)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from conftest import wait_until
from stack import start_beat, start_worker, wait_ready, workers

from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.processes import stop
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow

SUPPORT = Path(__file__).resolve().parents[1] / "support"
TWO_TOOLS = '[call clock {"tz": "Asia/Tokyo"}] [call add {"a": 3, "b": 4}]'


@pytest.fixture(name="tool_log")
def _tool_log(tmp_path: Path) -> Path:
    return tmp_path / "tool-runs.jsonl"


@pytest.fixture(name="tooled")
def _tooled(settings: Settings) -> Settings:
    return settings.model_copy(update={"tools": ["e2e_tools"]})


def env(tool_log: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(SUPPORT), "E2E_TOOL_LOG": str(tool_log), **extra}


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


def post(http: httpx.Client, conv: str, text: str) -> str:
    response = http.post(f"/v1/conversations/{conv}/turns", json={"input": text})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def status(http: httpx.Client, turn: str) -> str:
    return str(http.get(f"/v1/turns/{turn}").json()["status"])


def runs(tool_log: Path) -> Counter[str]:
    if not tool_log.exists():
        return Counter()
    return Counter(json.loads(line)["call_id"] for line in tool_log.read_text().splitlines())


def kinds(items: list[dict[str, Any]]) -> list[str]:
    return [str(i.get("role") if i["type"] == "message" else i["type"]) for i in items]


def assert_every_call_answered_once(items: list[dict[str, Any]]) -> None:
    calls = [i["call_id"] for i in items if i["type"] == "function_call"]
    outputs = [i["call_id"] for i in items if i["type"] == "function_call_output"]
    assert sorted(calls) == sorted(outputs) and len(set(outputs)) == len(outputs), (calls, outputs)


def test_two_server_tools_in_parallel_with_real_workers(tooled: Settings, http: httpx.Client,
                                                        emulator: EmulatorServer, tool_log: Path,
                                                        redis_client: redis.Redis) -> None:
    """One turn, two server tools at once: the items are the user message, both calls, both outputs and the
    answer; each tool ran once; the events are tool.called x2, tool.completed x2, then turn.completed."""
    conv = http.post("/v1/conversations", json={}).json()["id"]
    with workers(tooled, 1, concurrency=8, extra_env=env(tool_log)):
        turn = post(http, conv, f"time and sum? {TWO_TOOLS}")
        wait_until(lambda: status(http, turn) == "completed", timeout_s=20)
    assert kinds(emulator.store.snapshot_items(conv)) == ["user", "function_call", "function_call",
                                                          "function_call_output", "function_call_output",
                                                          "assistant"]
    assert sorted(runs(tool_log).values()) == [1, 1]
    events = [json.loads(f["data"])["type"] for _, f in redis_client.xrange(Keys().events(conv))]
    assert [t for t in events if t.startswith(("tool.", "turn.completed"))] == [
        "tool.called", "tool.called", "tool.completed", "tool.completed", "turn.completed"]


def test_fifty_conversations_with_tools_keep_order(tooled: Settings, http: httpx.Client, emulator: EmulatorServer,
                                                   tool_log: Path) -> None:
    """50 conversations x 3 turns, each turn with two tool calls, on two workers: every turn completes, each
    conversation's items are its turns' rounds in order, no call without its one output, no overlap."""
    convs = [http.post("/v1/conversations", json={}).json()["id"] for _ in range(50)]
    with workers(tooled, 2, concurrency=20, extra_env=env(tool_log)):
        with ThreadPoolExecutor(8) as pool:
            turns = list(pool.map(lambda cn: post(http, cn[0], f"t{cn[1]} {TWO_TOOLS}"),
                                  [(c, n) for n in range(3) for c in convs]))
        wait_until(lambda: all(status(http, t) == "completed" for t in turns), timeout_s=120,
                   message="every turn")
    for conv in convs:
        items = emulator.store.snapshot_items(conv)
        users = [i["content"][0]["text"].split(" ")[0] for i in items if i.get("role") == "user"]
        assert users == ["t0", "t1", "t2"]
        assert kinds(items) == ["user", "function_call", "function_call", "function_call_output",
                                "function_call_output", "assistant"] * 3
        assert_every_call_answered_once(items)
    assert emulator.store.overlap_count() == 0
    assert set(runs(tool_log).values()) == {1}


@pytest.mark.parametrize("point", ["tool_calls_streamed", "tool_ran", "tool_results_recorded",
                                   "tool_outputs_sent", "tool_final_delta", "tool_final_streamed"])
def test_sigkill_at_each_point_of_the_loop(point: str, tooled: Settings, http: httpx.Client,
                                           emulator: EmulatorServer, tool_log: Path) -> None:
    """A worker SIGKILLed at a point of the loop: another finishes the turn; every stored call has exactly one
    output, no output was sent twice, a call whose result was recorded never ran again (one that ran without
    its result recorded ran at most twice), and the conversation's next turn completes."""
    emulator.config.delta_interval_ms = 20
    conv = http.post("/v1/conversations", json={}).json()["id"]
    doomed = start_worker(tooled, "doomed", concurrency=8, extra_env=env(tool_log, PARLEY_FAULTPOINT=point))
    try:
        wait_ready(tooled, ["doomed"])
        first, second = post(http, conv, f"go {TWO_TOOLS}"), post(http, conv, "and then?")
        doomed.wait(timeout=30)
        assert doomed.returncode == -signal.SIGKILL
        with workers(tooled, 1, concurrency=8, extra_env=env(tool_log)), start_beat(tooled):
            wait_until(lambda: status(http, second) in ("completed", "failed"), timeout_s=40,
                       message="the next turn")
    finally:
        stop(doomed)
    assert status(http, first) == "completed" and status(http, second) == "completed"
    items = emulator.store.snapshot_items(conv)
    assert_every_call_answered_once(items)
    assert [i.get("role") for i in items if i["type"] == "message"] == ["user", "assistant", "user", "assistant"]
    counts = runs(tool_log)
    if point == "tool_ran":  # killed after a tool ran, before its result was recorded: that one runs again
        assert sorted(counts.values()) in ([1, 2], [2, 2], [1, 1])
    else:
        assert set(counts.values()) == {1}, counts
    rejected = [r for r in emulator.store.snapshot_requests() if r.conversation_id == conv
                and r.status == "rejected"]
    assert rejected == [] or point in ("tool_outputs_sent", "tool_final_delta")


LOOKUP = {"type": "function", "name": "lookup_order", "description": "Find an order.",
          "parameters": {"type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]}}


def test_bot_tools_through_the_api(tooled: Settings, http: httpx.Client, emulator: EmulatorServer,
                                   tool_log: Path) -> None:
    """A turn offering the bot's own tool: ``requires_action`` (the long-poll returns at once with the call),
    a wrong call id is a 409 naming it and sends nothing, the outputs resume it (one request upstream with
    them), posting them again is a 200 that changes nothing, the next turn completes; a bot that never
    answers gets its turn failed ``tool_outputs_timeout`` (the reaper wakes it) and the conversation goes on."""
    quick = tooled.model_copy(update={"tool_output_timeout_s": 1.0})
    conv = http.post("/v1/conversations", json={}).json()["id"]
    with workers(quick, 1, concurrency=8, extra_env=env(tool_log)), start_beat(quick):
        body = {"input": 'where is A-17? [call lookup_order {"number": "A-17"}]', "tools": [LOOKUP]}
        turn = http.post(f"/v1/conversations/{conv}/turns", json=body).json()["id"]
        after = post(http, conv, "thanks")
        waiting = http.get(f"/v1/turns/{turn}", params={"wait": 20}).json()
        assert waiting["status"] == "requires_action", waiting
        [call] = waiting["required_action"]["tool_calls"]
        wrong = http.post(f"/v1/turns/{turn}/tool_outputs", json={"outputs": [{"call_id": "call_x", "output": "?"}]})
        assert wrong.status_code == 409 and "call_x" in wrong.json()["error"]["message"]
        outputs = {"outputs": [{"call_id": call["call_id"], "output": '{"status": "shipped"}'}]}
        assert http.post(f"/v1/turns/{turn}/tool_outputs", json=outputs).status_code == 200
        wait_until(lambda: status(http, after) == "completed", timeout_s=20)
        again = http.post(f"/v1/turns/{turn}/tool_outputs", json=outputs)
        assert again.status_code == 200 and again.json()["status"] == "completed"
        sent = [r for r in emulator.store.snapshot_requests() if r.conversation_id == conv
                and r.function_call_outputs]
        assert len(sent) == 1 and sent[0].function_call_outputs[0]["call_id"] == call["call_id"]
        assert 'lookup_order={"status": "shipped"}' in http.get(f"/v1/turns/{turn}").json()["output_text"]

        silent = http.post(f"/v1/conversations/{conv}/turns", json={**body, "input": "[call lookup_order]"}
                           ).json()["id"]
        later = post(http, conv, "anyone?")
        wait_until(lambda: status(http, silent) == "failed", timeout_s=20, message="the timeout")
        wait_until(lambda: status(http, later) == "completed", timeout_s=20)
    assert http.get(f"/v1/turns/{silent}").json()["error"]["type"] == "tool_outputs_timeout"
    assert_every_call_answered_once(emulator.store.snapshot_items(conv))
