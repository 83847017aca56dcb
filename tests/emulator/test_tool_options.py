"""The emulator's ``tool_choice``, hosted tools and ``text.format`` JSON replies, through the real SDK, and
the JSON Schema instances it builds for arguments and replies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from openapi_spec import validate
from tools_support import ADD, GET_TIME, TOOLS, calls_of, create, outputs

from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.emulator.schemas import minimal_instance

ANSWER = {"type": "object", "additionalProperties": False,
          "required": ["city", "score", "tags", "kind", "when"],
          "properties": {"city": {"type": "string", "minLength": 6},
                         "score": {"type": "number", "minimum": 0.5},
                         "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                         "kind": {"type": "string", "enum": ["fact", "guess"]},
                         "when": {"$ref": "#/$defs/moment"}, "note": {"type": ["string", "null"]}},
          "$defs": {"moment": {"type": "object", "required": ["year"], "additionalProperties": False,
                               "properties": {"year": {"type": "integer", "exclusiveMinimum": 1999}}}}}
JSON_FORMAT = {"format": {"type": "json_schema", "name": "answer", "schema": ANSWER, "strict": True}}


@pytest.fixture(name="client")
def _client(emulator: EmulatorServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=emulator.base_url, api_key="test", max_retries=0) as client:
        yield client


class TestToolChoice:
    @pytest.mark.parametrize(("choice", "text", "called"), [
        ("required", "no marker", [("get_time", {"tz": "text"})]),
        ({"type": "function", "name": "add"}, "no marker", [("add", {"a": 3, "b": 0})]),
        ({"type": "function", "name": "add"}, "[call get_time] [call add {\"a\": 9, \"b\": 1}]",
         [("add", {"a": 9, "b": 1})]),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "add"}]},
         "[call get_time]", [("add", {"a": 3, "b": 0})]),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "add"}]},
         "[call get_time]", []),
        ("none", "[call get_time]", []),
        ("auto", "no marker", []),
        ({"type": "file_search"}, "[call get_time]", []),
    ])
    def test_choice_decides_which_calls(self, client: openai.OpenAI, choice: Any, text: str,
                                        called: list[tuple[str, Any]]) -> None:
        """``required`` and a named function force a call (schema-built arguments without a marker),
        ``allowed_tools`` narrows the callable set, ``none`` and a hosted choice never call; echoed as
        sent."""
        hosted = {"type": "file_search", "vector_store_ids": ["vs_1"]}
        reply = create(client, tools=[*TOOLS, hosted], tool_choice=choice, input=text)
        assert [(c.name, json.loads(c.arguments)) for c in calls_of(reply)] == called
        assert (reply.output_text == "") == bool(called)
        raw = client.responses.with_raw_response.retrieve(reply.id).http_response.json()
        assert raw["tool_choice"] == choice

    def test_required_keeps_calling_after_outputs(self, client: openai.OpenAI) -> None:
        """As upstream, ``required`` forces a call on every request (the caller resets it); ``auto`` with the
        outputs gets the text answer."""
        conv = client.conversations.create()
        [call] = calls_of(create(client, conversation=conv.id, tools=[GET_TIME], tool_choice="required",
                                 input="time?"))
        [again] = calls_of(create(client, conversation=conv.id, tools=[GET_TIME], tool_choice="required",
                                  input=outputs([call], "noon")))
        answer = create(client, conversation=conv.id, tools=[GET_TIME], input=outputs([again], "later"))
        assert answer.output_text == "Tool results: get_time=later"

    def test_hosted_tools_are_accepted_and_never_called(self, client: openai.OpenAI,
                                                        emulator: EmulatorServer) -> None:
        """web_search, file_search, code_interpreter, mcp and image_generation: echoed, recorded, no call."""
        hosted = [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                  {"type": "code_interpreter", "container": {"type": "auto"}},
                  {"type": "mcp", "server_label": "docs", "server_url": "https://example.com/mcp"},
                  {"type": "image_generation"}]
        reply = create(client, tools=hosted, tool_choice="required", input="search the web [call web_search]")
        assert calls_of(reply) == [] and reply.output_text.startswith("Reply 1 to: search the web")
        assert [t.type for t in reply.tools] == [t["type"] for t in hosted]
        [record] = emulator.store.snapshot_requests()
        assert record.tools == [] and record.other_tools == [t["type"] for t in hosted]


class TestJsonReplies:
    def test_a_json_schema_reply_validates(self, client: openai.OpenAI, emulator: EmulatorServer) -> None:
        """``text.format`` json_schema: the reply is JSON valid against the schema; the format is echoed and
        recorded; after tool outputs the answer is JSON too."""
        reply = create(client, text=JSON_FORMAT, input="where?")
        value = json.loads(reply.output_text)
        jsonschema.validate(value, ANSWER)
        assert value["kind"] == "fact" and value["when"] == {"year": 2000}
        assert reply.text is not None and reply.text.format.type == "json_schema"
        assert emulator.store.snapshot_requests()[0].text_format["name"] == "answer"
        [call] = calls_of(create(client, tools=TOOLS, text=JSON_FORMAT, input="[call add]"))
        replay = [{"role": "user", "content": "[call add]"}, call.model_dump(exclude_none=True),
                  *outputs([call], "3")]
        jsonschema.validate(json.loads(create(client, text=JSON_FORMAT, input=replay).output_text), ANSWER)

    def test_markers_make_bad_replies(self, client: openai.OpenAI) -> None:
        """``[bad_json]``: not JSON at all; ``[wrong_json]``: JSON the schema rejects."""
        with pytest.raises(ValueError):
            json.loads(create(client, text=JSON_FORMAT, input="[bad_json]").output_text)
        wrong = json.loads(create(client, text=JSON_FORMAT, input="[wrong_json]").output_text)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, ANSWER)

    def test_json_object_mode_wraps_the_reply(self, client: openai.OpenAI) -> None:
        reply = create(client, text={"format": {"type": "json_object"}}, input="hi")
        assert json.loads(reply.output_text)["reply"].startswith("Reply 1 to: hi")


@pytest.mark.parametrize("schema", [
    ANSWER, ADD["parameters"], GET_TIME["parameters"], {}, {"type": "object"},
    {"type": "array", "prefixItems": [{"const": 1}], "minItems": 3, "items": {"type": "boolean"}},
    {"anyOf": [{"type": "integer", "minimum": 5, "maximum": 7, "multipleOf": 3}, {"type": "string"}]},
    {"allOf": [{"type": "object", "required": ["a"],
                "properties": {"a": {"type": "string", "format": "email"}}},
               {"required": ["b"], "properties": {"b": {"type": "number", "exclusiveMaximum": -2}}}]},
    {"type": "object", "required": ["next"], "properties": {"next": {"$ref": "#/$defs/node"}},
     "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}},
    {"type": "string", "minLength": 10, "maxLength": 12},
    {"type": "null"},
])
def test_minimal_instances_validate(schema: dict[str, Any]) -> None:
    """Every schema shape the emulator supports gets a value it accepts."""
    jsonschema.Draft202012Validator(schema).validate(minimal_instance(schema))


def test_echoed_function_tools_are_spec_complete(client: openai.OpenAI) -> None:
    """A function tool sent with only a name comes back with every key the spec's FunctionTool requires."""
    raw = client.responses.with_raw_response.create(model="m", tools=[{"type": "function", "name": "ping"}],
                                                    input="[call ping]")
    body = raw.http_response.json()
    validate("Response", body)
    assert body["tools"] == [{"type": "function", "name": "ping", "description": None, "parameters": None,
                              "strict": True}]
    assert body["output"][0]["arguments"] == "{}"
