"""``tools`` and ``tool_choice`` of a Responses request, as parley accepts them.

Function tools are checked whole (they are what the worker or the bot runs); the hosted tools (``web_search``,
``file_search``, ``code_interpreter``, ``mcp``, ``image_generation``) get their ``type`` and required fields
checked and the rest passed through, so a new option of OpenAI's needs no parley release.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, WithJsonSchema

from .base import PassThrough, RequestModel

MAX_TOOLS = 128
"""OpenAI's own cap on the tools of one request."""
MAX_TOOLS_JSON_BYTES = 65_536
"""The tools of one request as compact JSON: each queued turn keeps its own copy in Redis."""
MAX_DESCRIPTION_CHARS = 4_096
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
"""OpenAI's rule for function and response-format names."""
_TOOL_NAME = re.compile(TOOL_NAME_PATTERN.strip("^$"))


def check_name(value: str) -> str:
    if _TOOL_NAME.fullmatch(value) is None:
        raise ValueError("must be 1 to 64 letters, digits, underscores or dashes")
    return value


def _check_parameters(value: dict[str, Any]) -> dict[str, Any]:
    # OpenAI refuses a function whose parameters are not an object schema; say so before the turn is queued.
    if value.get("type", "object") != "object":
        raise ValueError('must be a JSON Schema of type "object"')
    return value


Name = Annotated[str, AfterValidator(check_name),
                 WithJsonSchema({"type": "string", "pattern": TOOL_NAME_PATTERN})]
ObjectSchema = Annotated[dict[str, Any], AfterValidator(_check_parameters)]


class FunctionTool(RequestModel):
    """A function the model may call: run by the worker when a server tool of that name exists, else by the
    bot."""

    type: Literal["function"]
    name: Name
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    parameters: ObjectSchema
    """The arguments as a JSON Schema object."""
    strict: bool | None = None


class WebSearchTool(PassThrough):
    type: Literal["web_search", "web_search_2025_08_26", "web_search_preview",
                  "web_search_preview_2025_03_11"]


class FileSearchTool(PassThrough):
    type: Literal["file_search"]
    vector_store_ids: list[str]


class CodeInterpreterTool(PassThrough):
    type: Literal["code_interpreter"]
    container: str | dict[str, Any]


class McpTool(PassThrough):
    type: Literal["mcp"]
    server_label: Annotated[str, Field(min_length=1)]


class ImageGenerationTool(PassThrough):
    type: Literal["image_generation"]


Tool = Annotated[FunctionTool | WebSearchTool | FileSearchTool | CodeInterpreterTool | McpTool
                 | ImageGenerationTool, Field(discriminator="type")]


def _check_tools(value: list[Any]) -> list[Any]:
    names = [tool.name for tool in value if isinstance(tool, FunctionTool)]
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise ValueError(f"function names must be unique ({twice!r} is given twice)")
    size = len(json.dumps([tool.model_dump(exclude_none=True) for tool in value], separators=(",", ":"),
                          ensure_ascii=False).encode())
    if size > MAX_TOOLS_JSON_BYTES:
        raise ValueError(f"the tools must take at most {MAX_TOOLS_JSON_BYTES} bytes of JSON "
                         f"(these take {size})")
    return value


Tools = Annotated[list[Tool], Field(max_length=MAX_TOOLS), AfterValidator(_check_tools)]


class ToolChoiceFunction(RequestModel):
    """The model must call this function."""

    type: Literal["function"]
    name: Name


class AllowedTool(PassThrough):
    """A tool of ``tools`` named by its type and its own fields (``name`` for a function)."""

    type: Annotated[str, Field(min_length=1, max_length=64)]


class ToolChoiceAllowed(RequestModel):
    """The model may (``auto``) or must (``required``) call one of these tools."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: Annotated[list[AllowedTool], Field(min_length=1, max_length=MAX_TOOLS)]


def _choice_kind(value: Any) -> str | None:
    # One branch per kind of value, so an error names what was wrong with the choice the client meant
    # rather than why it is none of the three.
    if isinstance(value, str):
        return "mode"
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) else None


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("mode")]
    | Annotated[ToolChoiceFunction, Tag("function")] | Annotated[ToolChoiceAllowed, Tag("allowed_tools")],
    Discriminator(_choice_kind, custom_error_type="tool_choice", custom_error_message=(
        "must be 'none', 'auto', 'required', {type: function, name} or {type: allowed_tools, mode, tools}"))]

ServerTools = bool | Annotated[list[Name], Field(max_length=MAX_TOOLS)]
"""Which of the worker's server tools a turn offers: ``true`` (the default) all, ``false`` none, or these."""
