"""The Responses request as data: precedence of the turn, conversation and server layers (a pure function),
the fields the worker keeps for itself, the server's defaults checked at startup, the turn record, and
parley's accepted fields and values against OpenAI's pinned spec."""

from __future__ import annotations

import hashlib
import json
import types
import typing
from typing import Any

import openapi_spec
import pytest
from pydantic import BaseModel, ValidationError

from parley.worker.messages import Turn, TurnStatus
from parley.worker.request import (
    RequestDefaults,
    RequestOptions,
    inputs,
    options,
    resolve,
    tools,
    upstream_body,
)
from parley.worker.settings import Settings
from parley.worker.store.ingress import request_fingerprint


@pytest.mark.parametrize(("turn", "conversation", "server", "expected"), [
    ({"temperature": 0.1}, {"temperature": 0.5}, {"temperature": 0.9}, 0.1),
    ({}, {"temperature": 0.5}, {"temperature": 0.9}, 0.5),
    ({"temperature": None}, {"temperature": None}, {"temperature": 0.9}, 0.9),
    ({}, {}, {}, None),
])
def test_the_turn_beats_the_conversation_which_beats_the_server(
        turn: dict[str, Any], conversation: dict[str, Any], server: dict[str, Any], expected: float | None
) -> None:
    """Each field comes from the first layer that sets it; ``None`` sets nothing."""
    assert resolve(turn, conversation, server).get("temperature") == expected


def test_fields_are_taken_whole_and_layers_mix() -> None:
    """A turn's ``tools`` replace the conversation's (no merging of lists or objects), while fields the turn
    leaves out still come from the layers below, each from its own."""
    resolved = resolve({"tools": [{"type": "web_search"}], "model": "m-turn"},
                       {"tools": [{"type": "function", "name": "f", "parameters": {}}],
                        "text": {"verbosity": "low"}, "instructions": "conv"},
                       {"text": {"format": {"type": "json_object"}}, "top_p": 0.5, "model": "m-server"})
    assert resolved == {"tools": [{"type": "web_search"}], "model": "m-turn", "text": {"verbosity": "low"},
                        "instructions": "conv", "top_p": 0.5}


def test_no_layer_sets_what_the_worker_owns() -> None:
    """``stream``, ``conversation``, ``input``, ``previous_response_id`` (and background/store) never come
    from a layer, and the worker's own fields win over a turn's request in the body it sends."""
    owned = {"stream": False, "conversation": "conv_other", "input": "x", "previous_response_id": "resp_1",
             "background": True, "store": False}
    assert resolve(owned, owned, owned) == {}
    body = upstream_body({**owned, "temperature": 0.3, "model": "from-request"},
                         {"conversation": "conv_mine", "input": "hi", "model": "m"})
    assert body == {"temperature": 0.3, "conversation": "conv_mine", "input": "hi", "model": "m"}


def test_server_defaults_are_checked_at_startup() -> None:
    """PARLEY_DEFAULT_REQUEST goes through the same models as a turn: an unknown or ill-typed field stops the
    process with its name; a good one is kept without its nulls."""
    with pytest.raises(ValidationError, match="PARLEY_DEFAULT_REQUEST tool_choice"):
        Settings(_env_file=None, default_request={"tool_choice": "sometimes"})
    with pytest.raises(ValidationError, match="PARLEY_DEFAULT_REQUEST temperatur"):
        Settings(_env_file=None, default_request={"temperatur": 1})
    with pytest.raises(ValidationError, match="PARLEY_DEFAULT_REQUEST model"):
        Settings(_env_file=None, default_request={"model": "x"})  # that is PARLEY_MODEL's job
    settings = Settings(_env_file=None, default_request={"reasoning": {"effort": "low", "summary": None}})
    assert settings.default_request == {"reasoning": {"effort": "low"}}


def test_a_turn_without_options_stores_no_request_field() -> None:
    """The queued turn is most of Redis's memory: no options, no field (not even ``{}``); with them, one JSON
    field that reads back as it was written."""
    plain = Turn(id="turn_x", conversation_id="conv_x", status=TurnStatus.queued, input="hi", created_at=1.0,
                 request={})
    assert "request" not in plain.to_hash() and "server_tools" not in plain.to_hash()
    rich = plain.model_copy(update={"request": {"tools": [{"type": "web_search"}], "temperature": 0.2},
                                    "server_tools": []})
    stored = rich.to_hash()
    assert json.loads(stored["request"]) == {"tools": [{"type": "web_search"}], "temperature": 0.2}
    assert Turn.from_hash(stored, "conv_x", "turn_x") == rich


def test_the_fingerprint_covers_the_options_and_keeps_old_keys_valid() -> None:
    """Another tool list or server_tools is another request; a plain turn hashes exactly as before the
    options existed, so an idempotency key stored then still matches its retry."""
    plain = {"input": "hi", "model": None, "instructions": None, "metadata": {}}
    before = hashlib.blake2b(json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                                        ).encode(), digest_size=8).hexdigest()
    assert request_fingerprint({**plain, "tools": None, "server_tools": None}) == before
    variants = {request_fingerprint({**plain, **extra}) for extra in (
        {}, {"tools": [{"type": "web_search"}]}, {"tools": [{"type": "file_search", "vector_store_ids": []}]},
        {"server_tools": []}, {"temperature": 0.5})}
    assert len(variants) == 5


# --- against OpenAI's pinned spec (skips without ../shared) ----------------------------------------------


def _schemas() -> dict[str, Any]:
    return dict(openapi_spec._components()["components"]["schemas"])


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _schemas()[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    """Every property a schema names, through ``$ref``, ``allOf`` and nullable ``anyOf``."""
    schema = _resolve(schema)
    found = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []) + [s for s in schema.get("anyOf", []) if s.get("type") != "null"]:
        found.update(_properties(part))
    return found


def _enum(schema: dict[str, Any]) -> set[Any]:
    """Every value a schema's enums allow, through ``$ref``, ``anyOf``/``oneOf`` and array items."""
    schema = _resolve(schema)
    values = set(schema.get("enum", []))
    for part in schema.get("anyOf", []) + schema.get("oneOf", []) + ([schema["items"]] if "items" in schema
                                                                      else []):
        values |= _enum(part)
    return values


def _literals(annotation: Any) -> set[Any]:
    """The values of every ``Literal`` inside an annotation (unions, ``Annotated``, lists)."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    values: set[Any] = set()
    for arg in typing.get_args(annotation):
        values |= _literals(arg)
    return values


def _field_values(model: type[BaseModel], field: str) -> set[Any]:
    return _literals(model.model_fields[field].annotation)


def _names(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def test_every_accepted_field_is_a_field_of_create_response() -> None:
    """parley invents no request field: each one it accepts is one of ``CreateResponse``'s."""
    spec = set(_properties({"$ref": "#/components/schemas/CreateResponse"}))
    assert _names(RequestDefaults) - spec == set()


NESTED = [
    (tools.FunctionTool, "FunctionTool"), (tools.WebSearchTool, "WebSearchTool"),
    (tools.FileSearchTool, "FileSearchTool"), (tools.CodeInterpreterTool, "CodeInterpreterTool"),
    (tools.McpTool, "MCPTool"), (tools.ImageGenerationTool, "ImageGenTool"),
    (tools.ToolChoiceFunction, "ToolChoiceFunction"), (tools.ToolChoiceAllowed, "ToolChoiceAllowed"),
    (options.TextFormatJsonSchema, "TextResponseFormatJsonSchema"), (options.Text, "ResponseTextParam"),
    (options.Reasoning, "Reasoning"), (inputs.InputText, "InputTextContent"),
    (inputs.InputImage, "InputImageContent"), (inputs.InputFile, "InputFileContent"),
    (inputs.InputMessage, "EasyInputMessage"),
]


@pytest.mark.parametrize(("model", "schema"), NESTED, ids=[schema for _, schema in NESTED])
def test_nested_fields_are_the_specs(model: type[BaseModel], schema: str) -> None:
    """Tools, tool choices, text formats, reasoning and input parts take only fields the spec names."""
    assert _names(model) - set(_properties({"$ref": f"#/components/schemas/{schema}"})) == set()


def _create_response(field: str) -> dict[str, Any]:
    return dict(_properties({"$ref": "#/components/schemas/CreateResponse"})[field])


ENUMS = [
    ("truncation", lambda: _field_values(RequestOptions, "truncation"),
     lambda: _create_response("truncation")),
    ("service_tier", lambda: _field_values(RequestOptions, "service_tier"),
     lambda: _create_response("service_tier")),
    ("include", lambda: _field_values(RequestOptions, "include"), lambda: _create_response("include")),
    ("reasoning.effort", lambda: _field_values(options.Reasoning, "effort"),
     lambda: {"$ref": "#/components/schemas/ReasoningEffort"}),
    ("reasoning.summary", lambda: _field_values(options.Reasoning, "summary"),
     lambda: _properties({"$ref": "#/components/schemas/Reasoning"})["summary"]),
    ("text.verbosity", lambda: _field_values(options.Text, "verbosity"),
     lambda: {"$ref": "#/components/schemas/Verbosity"}),
    ("tool_choice", lambda: _field_values(RequestOptions, "tool_choice") - {"function", "allowed_tools"},
     lambda: {"$ref": "#/components/schemas/ToolChoiceOptions"}),
    ("tool_choice.mode", lambda: _field_values(tools.ToolChoiceAllowed, "mode"),
     lambda: _properties({"$ref": "#/components/schemas/ToolChoiceAllowed"})["mode"]),
    ("input_image.detail", lambda: _field_values(inputs.InputImage, "detail"),
     lambda: {"$ref": "#/components/schemas/ImageDetail"}),
    ("input_file.detail", lambda: _field_values(inputs.InputFile, "detail"),
     lambda: {"$ref": "#/components/schemas/FileInputDetail"}),
    ("role", lambda: _field_values(inputs.InputMessage, "role"),
     lambda: _properties({"$ref": "#/components/schemas/EasyInputMessage"})["role"]),
    ("tools[].type", lambda: set().union(*(_field_values(model, "type") for model in (
        tools.FunctionTool, tools.WebSearchTool, tools.FileSearchTool, tools.CodeInterpreterTool,
        tools.McpTool, tools.ImageGenerationTool))),
     lambda: {"oneOf": [_properties(s)["type"] for s in _schemas()["Tool"]["oneOf"]]}),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), ENUMS, ids=[name for name, _, _ in ENUMS])
def test_accepted_values_are_the_specs(name: str, ours: Any, theirs: Any) -> None:
    """No enum value parley accepts is one OpenAI's spec does not list."""
    accepted = ours()
    assert accepted and accepted - _enum(theirs()) == set()


def test_a_full_request_as_the_worker_sends_it_is_valid_for_the_spec() -> None:
    """A turn using every option and every kind of input part, as ``Upstream`` sends it, is a valid
    ``CreateResponse`` body."""
    request = RequestOptions.model_validate({
        "tools": [{"type": "function", "name": "get_time", "description": "The time.", "strict": True,
                   "parameters": {"type": "object", "properties": {}, "additionalProperties": False}},
                  {"type": "web_search", "search_context_size": "low"},
                  {"type": "file_search", "vector_store_ids": ["vs_1"]},
                  {"type": "code_interpreter", "container": {"type": "auto"}},
                  {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example/sse",
                   "require_approval": "never"},
                  {"type": "image_generation"}],
        "tool_choice": {"type": "allowed_tools", "mode": "auto",
                        "tools": [{"type": "function", "name": "get_time"}]},
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "answer", "strict": True,
                            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
                 "verbosity": "low"},
        "reasoning": {"effort": "low", "summary": "auto"}, "max_output_tokens": 256, "temperature": 0.2,
        "top_p": 0.9, "truncation": "auto", "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "bot-1", "service_tier": "flex", "safety_identifier": "user-hash"}).options()
    message = inputs.InputMessage.model_validate({"role": "user", "content": [
        {"type": "input_text", "text": "What is in these?"},
        {"type": "input_image", "image_url": "https://files.example/cat.png", "detail": "low"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}]})
    # Checked on its own: the spec's input item union is ambiguous for a message with a part list (it is
    # both an EasyInputMessage and an InputMessage), which a plain JSON Schema validator counts as invalid.
    openapi_spec.validate("EasyInputMessage", inputs.message_json(message))
    body = upstream_body(request, {"conversation": "conv_1", "input": [{"role": "user", "content": "hi"}],
                                   "model": "gpt-5.4-mini", "instructions": "Be brief.",
                                   "metadata": {"parley_turn_id": "turn_1"}, "stream": True})
    openapi_spec.validate("CreateResponse", body)
    for choice in ("none", "auto", "required", {"type": "function", "name": "get_time"}):
        openapi_spec.validate("CreateResponse", {**body, "tool_choice": choice})


def test_the_literal_helper_sees_through_annotations() -> None:
    """The helper the spec checks rely on finds values in unions and ``Annotated`` (else they would pass
    vacuously)."""
    assert _literals(typing.Annotated[typing.Literal["a"] | None, "x"]) == {"a"}
    assert _literals(types.NoneType) == set()
