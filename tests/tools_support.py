"""Function tools and helpers for the emulator's function-calling tests (tests/emulator/test_tool*.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import openai
from openapi_spec import SSE_EVENT_SCHEMAS, validate

FC_ID = re.compile(r"^fc_[0-9a-f]{48}$")
CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")
GET_TIME = {"type": "function", "name": "get_time", "description": "The time in a zone.", "strict": True,
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"],
                           "additionalProperties": False}}
ADD = {"type": "function", "name": "add", "strict": True,
       "parameters": {"type": "object", "additionalProperties": False, "required": ["a", "b"],
                      "properties": {"a": {"type": "integer", "minimum": 3}, "b": {"type": "integer"}}}}
TOOLS = [GET_TIME, ADD]


def create(client: openai.OpenAI, **kwargs: Any) -> Any:
    """``responses.create`` whose raw body is checked against the spec's Response."""
    raw = client.responses.with_raw_response.create(model="m", **kwargs)
    validate("Response", raw.http_response.json())
    return raw.parse()


def calls_of(response: Any) -> list[Any]:
    return [item for item in response.output if item.type == "function_call"]


def outputs(calls: list[Any], *values: str) -> list[dict[str, str]]:
    return [{"type": "function_call_output", "call_id": c.call_id, "output": v} for c, v in zip(
        calls, values, strict=True)]


def items(client: openai.OpenAI, conv_id: str) -> list[dict[str, Any]]:
    raw = client.conversations.items.with_raw_response.list(conv_id, order="asc", limit=100)
    body = raw.http_response.json()
    if body["data"]:  # an empty list's null first_id/last_id is a documented UNKNOWN (docs/emulator.md)
        validate("ConversationItemList", body)
    return list(body["data"])


def stream_events(client: openai.OpenAI, **kwargs: Any) -> list[dict[str, Any]]:
    """The raw SSE events of a streamed request, each checked against its spec schema."""
    with client.responses.with_streaming_response.create(model="m", stream=True, **kwargs) as raw:
        events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: ")]
    for event in events:
        validate(SSE_EVENT_SCHEMAS[event["type"]], event)
    return events
