"""The emulator's function calling, through the real SDK: calls asked for by markers or ``tool_choice``, their
stream, the loop on a conversation, OpenAI's three 400s for calls and outputs, and JSON replies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from openapi_spec import validate
from tools_support import (
    ADD,
    CALL_ID,
    FC_ID,
    GET_TIME,
    TOOLS,
    calls_of,
    create,
    items,
    outputs,
    stream_events,
)

from parley.worker.local.emulator import EmulatorServer


@pytest.fixture(name="client")
def _client(emulator: EmulatorServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=emulator.base_url, api_key="test", max_retries=0) as client:
        yield client


class TestCalls:
    def test_a_marker_asks_for_one_call(self, client: openai.OpenAI, emulator: EmulatorServer) -> None:
        """``[call get_time {...}]`` gives one function_call with OpenAI's id shapes and the arguments as a
        JSON string; the response echoes the tools; the conversation stores the user message and the call."""
        conv = client.conversations.create()
        reply = create(client, conversation=conv.id, tools=TOOLS,
                       input='What time is it? [call get_time {"tz": "UTC"}]')
        assert reply.status == "completed" and reply.output_text == ""
        [call] = reply.output
        assert call.type == "function_call" and call.name == "get_time" and call.status == "completed"
        assert FC_ID.match(call.id) and CALL_ID.match(call.call_id)
        assert call.arguments == '{"tz":"UTC"}'
        assert [t.name for t in reply.tools] == ["get_time", "add"] and reply.tools[0].strict is True
        stored = items(client, conv.id)
        assert [(i["type"], i.get("role")) for i in stored] == [("message", "user"), ("function_call", None)]
        assert stored[1] == call.model_dump(exclude_none=True)

    def test_arguments_default_to_a_minimal_valid_object(self, client: openai.OpenAI) -> None:
        """A marker without arguments gets the smallest object the tool's schema accepts."""
        reply = create(client, tools=TOOLS, input="sum please [call add]")
        [call] = calls_of(reply)
        arguments = json.loads(call.arguments)
        jsonschema.validate(arguments, ADD["parameters"])
        assert arguments == {"a": 3, "b": 0}

    def test_several_markers_are_parallel_calls(self, client: openai.OpenAI) -> None:
        """Two markers: two calls at output_index 0 and 1; ``parallel_tool_calls=false``: only the first."""
        text = 'both [call get_time {"tz": "CET"}] and [call add {"a": 3, "b": 4}]'
        both = create(client, tools=TOOLS, input=text)
        assert [(c.name, c.arguments) for c in calls_of(both)] == [
            ("get_time", '{"tz":"CET"}'), ("add", '{"a":3,"b":4}')]
        assert len({c.call_id for c in calls_of(both)}) == 2 and both.parallel_tool_calls is True
        one = create(client, tools=TOOLS, input=text, parallel_tool_calls=False)
        assert [c.name for c in calls_of(one)] == ["get_time"] and one.parallel_tool_calls is False

    @pytest.mark.parametrize("text", ["[call launch]", "[call web_search]", "[call get_time {not json}]",
                                      "[call get_time"])
    def test_no_call_without_an_offered_tool_and_a_whole_marker(self, client: openai.OpenAI,
                                                                 text: str) -> None:
        """An unknown or hosted name, bad JSON or an unclosed marker: a plain text reply."""
        reply = create(client, tools=[GET_TIME, {"type": "web_search"}], input=text)
        assert calls_of(reply) == [] and reply.output_text.startswith(f"Reply 1 to: {text}")

    def test_streamed_calls_follow_the_recorded_order(self, client: openai.OpenAI,
                                                      emulator: EmulatorServer) -> None:
        """Per call: output_item.added (arguments ""), arguments deltas, arguments.done, output_item.done;
        every event spec-valid with consecutive sequence numbers; response.completed holds only the calls."""
        emulator.config.chunk_chars = 4
        conv = client.conversations.create()
        events = stream_events(client, conversation=conv.id, tools=TOOLS,
                               input='[call get_time {"tz": "Europe/Paris"}] [call add {"a": 5, "b": 6}]')
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        kinds = [e["type"].removeprefix("response.") for e in events]
        assert kinds[:2] == ["created", "in_progress"] and kinds[-1] == "completed"
        final = events[-1]["response"]["output"]
        assert [i["type"] for i in final] == ["function_call", "function_call"]
        for index, call in enumerate(final):
            mine = [e for e in events if e.get("output_index") == index]
            types = [e["type"].removeprefix("response.") for e in mine]
            deltas = types.count("function_call_arguments.delta")
            assert deltas > 1 and types == ["output_item.added", *["function_call_arguments.delta"] * deltas,
                                            "function_call_arguments.done", "output_item.done"]
            assert mine[0]["item"] == dict(call, arguments="", status="in_progress")
            assert all(e["item_id"] == call["id"] for e in mine[1:-1])
            assert "".join(e["delta"] for e in mine[1:-2]) == mine[-2]["arguments"] == call["arguments"]
            assert mine[-2]["name"] == call["name"] and mine[-1]["item"] == call
        assert [i["type"] for i in items(client, conv.id)] == ["message", "function_call", "function_call"]

    def test_the_sdk_stream_helper_accumulates_the_calls(self, client: openai.OpenAI) -> None:
        """``responses.stream`` (which checks item order) ends with the same calls as a plain request."""
        with client.responses.stream(model="m", tools=TOOLS, input="[call get_time] [call add]") as stream:
            final = stream.get_final_response()
        assert [(c.name, json.loads(c.arguments)) for c in calls_of(final)] == [
            ("get_time", {"tz": "text"}), ("add", {"a": 3, "b": 0})]


class TestLoop:
    def test_outputs_get_a_text_answer_and_items_keep_their_order(self, client: openai.OpenAI,
                                                                  emulator: EmulatorServer) -> None:
        """Calls, then only their outputs on the conversation: the answer names each output, and the items
        are user message, calls, outputs, assistant message; the request log records the loop."""
        conv = client.conversations.create()
        first = create(client, conversation=conv.id, tools=TOOLS, input="[call get_time] [call add]")
        calls = calls_of(first)
        answer = create(client, conversation=conv.id, tools=TOOLS, input=outputs(calls, "12:00", "7"))
        assert calls_of(answer) == [] and answer.output_text == "Tool results: get_time=12:00; add=7"
        stored = items(client, conv.id)
        assert [i["type"] for i in stored] == ["message", "function_call", "function_call",
                                               "function_call_output", "function_call_output", "message"]
        assert [i.get("call_id") for i in stored[1:5]] == [c.call_id for c in calls] * 2
        assert stored[3]["output"] == "12:00" and stored[5]["role"] == "assistant"
        first_log, second_log = emulator.store.snapshot_requests()
        assert first_log.tools == ["get_time", "add"] and first_log.tool_choice == "auto"
        assert [c["call_id"] for c in first_log.function_calls] == [c.call_id for c in calls]
        assert second_log.function_call_outputs == [{"call_id": c.call_id, "output": o}
                                                    for c, o in zip(calls, ["12:00", "7"], strict=True)]
        assert second_log.input_texts == [] and second_log.function_calls == []

    def test_rounds_call_again_after_each_batch_of_outputs(self, client: openai.OpenAI) -> None:
        """``rounds=3``: three responses with a call, each answered with its output, then the text answer;
        a new user message starts counting again."""
        conv = client.conversations.create()
        reply = create(client, conversation=conv.id, tools=TOOLS, input="[call add {} rounds=3]")
        for round_number in range(1, 4):
            [call] = calls_of(reply)
            assert call.arguments == "{}"
            reply = create(client, conversation=conv.id, tools=TOOLS,
                           input=outputs([call], str(round_number)))
        assert reply.output_text == "Tool results: add=3"
        again = create(client, conversation=conv.id, tools=TOOLS, input="[call add {} rounds=3]")
        assert len(calls_of(again)) == 1

    def test_a_stateless_request_carries_its_own_calls(self, client: openai.OpenAI) -> None:
        """Without a conversation, the input holds the call and its output; an output alone has no call."""
        first = create(client, tools=TOOLS, input="[call get_time]")
        [call] = calls_of(first)
        replay = [{"role": "user", "content": "[call get_time]"}, call.model_dump(exclude_none=True),
                  *outputs([call], "noon")]
        assert create(client, tools=TOOLS, input=replay).output_text == "Tool results: get_time=noon"
        with pytest.raises(openai.BadRequestError, match="No tool call found"):
            client.responses.create(model="m", tools=TOOLS, input=outputs([call], "noon"))

    def test_items_create_can_close_a_pending_call(self, client: openai.OpenAI) -> None:
        """An output added with ``conversations.items.create`` answers the call: the next turn goes on."""
        conv = client.conversations.create()
        [call] = calls_of(create(client, conversation=conv.id, tools=TOOLS, input="[call get_time]"))
        client.conversations.items.create(conv.id, items=outputs([call], "error: timed out"))
        assert create(client, conversation=conv.id, input="next").output_text.startswith("Reply 2 to: next")


class TestRules:
    def _pending(self, client: openai.OpenAI) -> tuple[str, list[Any]]:
        conv = client.conversations.create()
        reply = create(client, conversation=conv.id, tools=TOOLS, input="[call get_time] [call add]")
        return conv.id, calls_of(reply)

    def _rejected(self, client: openai.OpenAI, conv_id: str, input_: Any) -> str:
        """The message of the 400 this input gets, checked to be OpenAI's envelope for these rules."""
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="m", conversation=conv_id, tools=TOOLS, input=input_)
        validate("ErrorResponse", {"error": info.value.body})
        assert info.value.type == "invalid_request_error" and info.value.param == "input"
        assert info.value.code is None
        return str(info.value.body["message"])  # type: ignore[index]

    def test_a_new_turn_with_pending_calls_is_rejected_until_every_output_is_sent(
            self, client: openai.OpenAI, emulator: EmulatorServer) -> None:
        """OpenAI's exact 400 names the first call without an output, on every attempt, and for a partial set
        of outputs; nothing is stored until all outputs come, then the loop goes on."""
        conv_id, calls = self._pending(client)
        for _ in range(2):
            error = self._rejected(client, conv_id, "a new question")
            assert error == f"No tool output found for function call {calls[0].call_id}."
        error = self._rejected(client, conv_id, outputs(calls[:1], "12:00"))
        assert error == f"No tool output found for function call {calls[1].call_id}."
        assert len(items(client, conv_id)) == 3
        assert [r.status for r in emulator.store.snapshot_requests()][1:] == ["rejected"] * 3
        done = create(client, conversation=conv_id, tools=TOOLS, input=outputs(calls, "12:00", "7"))
        assert done.output_text.startswith("Tool results:")

    def test_an_output_for_an_unknown_call_is_rejected(self, client: openai.OpenAI) -> None:
        conv_id, calls = self._pending(client)
        stranger = {"type": "function_call_output", "call_id": "call_0000000000unknown00000", "output": "x"}
        error = self._rejected(client, conv_id, [*outputs(calls, "a", "b"), stranger])
        assert error == ("No tool call found for function call output with call_id "
                                 "call_0000000000unknown00000.")

    def test_resending_a_stored_call_is_a_duplicate(self, client: openai.OpenAI) -> None:
        """The agents-js mistake: the call itself sent back with its output."""
        conv_id, calls = self._pending(client)
        error = self._rejected(client, conv_id, [calls[0].model_dump(exclude_none=True),
                                                 *outputs(calls, "a", "b")])
        assert error == (f"Duplicate item found with id {calls[0].id}. Remove duplicate items from your "
                                 "input and try again.")
        with pytest.raises(openai.BadRequestError, match="Duplicate item found"):
            client.conversations.items.create(conv_id, items=[calls[1].model_dump(exclude_none=True)])
        twice = {"type": "function_call", "id": "fc_x", "call_id": "call_x", "name": "add", "arguments": "{}"}
        with pytest.raises(openai.BadRequestError, match="Duplicate item found with id fc_x"):
            client.conversations.create(items=[twice, twice])

    def test_a_stream_dropped_during_the_calls_stores_nothing(self, client: openai.OpenAI,
                                                              emulator: EmulatorServer) -> None:
        """The connection drops at the first arguments delta: the calls are never stored, so an output for
        one is "No tool call found" (openai-python#3561); ``drop_stores_calls`` keeps them instead."""
        conv = client.conversations.create()
        seen: list[Any] = []
        with pytest.raises(openai.APIConnectionError):
            stream = client.responses.create(model="m", conversation=conv.id, tools=TOOLS, stream=True,
                                             input="[call get_time]", metadata={"emulator_fault": "drop"})
            for event in stream:
                seen.append(event)
        added = next(e for e in seen if e.type == "response.output_item.added")
        assert seen[-1].type == "response.function_call_arguments.delta"
        assert emulator.store.snapshot_requests()[0].status == "failed" and items(client, conv.id) == []
        error = self._rejected(client, conv.id, outputs([added.item], "12:00"))
        assert error.startswith("No tool call found for function call output")

        emulator.config.drop_stores_calls = True
        with pytest.raises(openai.APIConnectionError):
            list(client.responses.create(model="m", conversation=conv.id, tools=TOOLS, stream=True,
                                         input="[call get_time]", metadata={"emulator_fault": "drop"}))
        deadline = time.monotonic() + 5
        while [i["type"] for i in items(client, conv.id)] != ["message", "function_call"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def test_a_client_that_goes_away_while_calls_stream_stores_nothing(self, client: openai.OpenAI,
                                                                       emulator: EmulatorServer) -> None:
        """Not only the drop fault: a client closing the stream mid-arguments (a killed worker) ends the
        response without storing its calls, unless ``drop_stores_calls``."""
        emulator.config.chunk_chars, emulator.config.delta_interval_ms = 2, 50
        conv = client.conversations.create()
        for keep, expected in ((False, "failed"), (True, "completed")):
            emulator.config.drop_stores_calls = keep
            stream = client.responses.create(model="m", conversation=conv.id, tools=TOOLS, stream=True,
                                             input='[call get_time {"tz": "Pacific/Auckland"}]')
            for event in stream:
                if event.type == "response.function_call_arguments.delta":
                    break
            stream.close()
            deadline = time.monotonic() + 10
            while (status := emulator.store.snapshot_requests()[-1].status) == "in_progress":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert status == expected
        assert [i["type"] for i in items(client, conv.id)] == ["message", "function_call"]
