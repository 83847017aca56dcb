"""A request's ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``text``: validated (400 naming the
``param``), echoed in the Response as OpenAI does, and the reply's JSON when ``text.format`` asks for it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .objects import JSON
from .schemas import minimal_instance
from .store import ApiError

CHOICES = ("none", "auto", "required")
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BAD_JSON, WRONG_JSON = "[bad_json]", "[wrong_json]"


@dataclass(frozen=True)
class Offer:
    tools: list[JSON] = field(default_factory=list)
    """As echoed in the Response: function tools with every key the spec requires, the others as sent."""
    callable: dict[str, JSON | None] = field(default_factory=dict)
    """Function tools the model may call now (``allowed_tools`` narrows them): name -> parameters schema."""
    tool_choice: Any = "auto"
    forced: str | bool = False
    """A tool name (``{"type": "function", "name"}``), True (``required``: the first callable), or False."""
    parallel_tool_calls: bool = True
    text: JSON = field(default_factory=lambda: {"format": {"type": "text"}})

    @property
    def function_names(self) -> list[str]:
        return [t["name"] for t in self.tools if t["type"] == "function"]

    @property
    def other_tools(self) -> list[str]:
        return [t["type"] for t in self.tools if t["type"] != "function"]


def offer(body: JSON) -> Offer:
    tools = _tools(body.get("tools"))
    functions = {t["name"]: t["parameters"] for t in tools if t["type"] == "function"}
    choice = "auto" if body.get("tool_choice") is None else body["tool_choice"]
    callable_, forced = _choice(choice, functions)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ApiError(400, "Invalid type for 'parallel_tool_calls': expected a boolean.",
                       param="parallel_tool_calls")
    return Offer(tools=tools, callable=callable_, tool_choice=choice, forced=forced,
                 parallel_tool_calls=parallel is not False, text=_text(body.get("text")))


def reply_text(offer_: Offer, plain: str, user_text: str) -> str:
    """The message text for ``text.format``; ``[bad_json]`` / ``[wrong_json]`` in the user text make it
    unparseable / valid JSON that the schema rejects, for testing the caller's checks."""
    fmt = offer_.text["format"]
    if fmt["type"] == "json_object":
        return json.dumps({"reply": plain})
    if fmt["type"] != "json_schema":
        return plain
    if BAD_JSON in user_text:
        return '{"reply": "this is not JSON'
    if WRONG_JSON in user_text:
        # A value of another type than the schema's: an object schema gets a string, anything else an object.
        return json.dumps("not what the schema asked for" if fmt["schema"].get("type", "object") != "string"
                          else {"unexpected": True})
    return json.dumps(minimal_instance(fmt["schema"]))


def _tools(raw: Any) -> list[JSON]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError(400, "Invalid type for 'tools': expected an array of tools.", param="tools")
    echoed, names = [], set()
    for index, tool in enumerate(raw):
        param = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise ApiError(400, f"Invalid type for '{param}': expected an object with a 'type'.", param=param)
        if tool["type"] != "function":
            # Hosted tools are accepted and never called (docs/emulator.md).
            echoed.append(dict(tool))
            continue
        echoed.append(_function(tool, param))
        if tool["name"] in names:
            raise ApiError(400, f"Duplicate tool name '{tool['name']}' in 'tools'.", param=f"{param}.name")
        names.add(tool["name"])
    return echoed


def _function(tool: JSON, param: str) -> JSON:
    name = tool.get("name")
    if name is None:
        raise ApiError(400, f"Missing required parameter: '{param}.name'.", param=f"{param}.name",
                       code="missing_required_parameter")
    if not isinstance(name, str) or not NAME.match(name):
        raise ApiError(400, f"Invalid '{param}.name': string does not match pattern. Expected a string that "
                            "matches the pattern '^[a-zA-Z0-9_-]+$'.", param=f"{param}.name",
                       code="invalid_value")
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise ApiError(400, f"Invalid type for '{param}.parameters': expected an object.",
                       param=f"{param}.parameters")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise ApiError(400, f"Invalid type for '{param}.strict': expected a boolean.",
                       param=f"{param}.strict")
    # UNKNOWN upstream: what an omitted 'strict' is echoed as; the Responses API treats functions as strict.
    return {"type": "function", "name": name, "description": tool.get("description"),
            "parameters": parameters, "strict": True if strict is None else strict}


def _choice(choice: Any, functions: dict[str, JSON | None]) -> tuple[dict[str, JSON | None], str | bool]:
    if isinstance(choice, str):
        if choice not in CHOICES:
            raise ApiError(400, f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and "
                                "'required'.", param="tool_choice", code="invalid_value")
        return functions, choice == "required"
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise ApiError(400, "Invalid type for 'tool_choice': expected a string or an object.",
                       param="tool_choice")
    if choice["type"] == "function":
        name = choice.get("name")
        if name not in functions:
            raise ApiError(400, f"Tool choice 'function' with name '{name}' not found in 'tools' parameter.",
                           param="tool_choice")
        return {name: functions[name]}, str(name)
    if choice["type"] == "allowed_tools":
        allowed = choice.get("tools")
        if choice.get("mode") not in ("auto", "required") or not isinstance(allowed, list):
            raise ApiError(400, "Invalid 'tool_choice': allowed_tools needs 'mode' ('auto' or 'required') "
                                "and a 'tools' array.", param="tool_choice")
        names = {t.get("name") for t in allowed if isinstance(t, dict) and t.get("type") == "function"}
        return {n: p for n, p in functions.items() if n in names}, choice["mode"] == "required"
    # A hosted tool, mcp or custom choice: nothing the emulator calls, so the model answers with text.
    return {}, False


def _text(raw: Any) -> JSON:
    if raw is None:
        return {"format": {"type": "text"}}
    if not isinstance(raw, dict):
        raise ApiError(400, "Invalid type for 'text': expected an object.", param="text")
    fmt = raw.get("format") or {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise ApiError(400, "Invalid 'text.format': expected a type of 'text', 'json_object' or "
                            "'json_schema'.", param="text.format.type")
    if fmt["type"] == "json_schema":
        for key, kind in (("name", str), ("schema", dict)):
            if key not in fmt:
                raise ApiError(400, f"Missing required parameter: 'text.format.{key}'.",
                               param=f"text.format.{key}", code="missing_required_parameter")
            if not isinstance(fmt[key], kind):
                raise ApiError(400, f"Invalid type for 'text.format.{key}'.", param=f"text.format.{key}")
        if not NAME.match(fmt["name"]):
            raise ApiError(400, "Invalid 'text.format.name': string does not match pattern. Expected a "
                                "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                           param="text.format.name", code="invalid_value")
    return {**raw, "format": fmt}
