"""The options of a Responses request a turn, a conversation's defaults and the server's defaults may set.

Names, shapes and enums are OpenAI's (``CreateResponse`` in the pinned spec); parley refuses unknown fields
and values at the door so a typo is a 422 naming it, never a turn that fails upstream minutes later.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from .base import RequestModel, integral
from .tools import Name, ToolChoice, Tools

MAX_MODEL_CHARS = 128
MAX_INSTRUCTIONS_CHARS = 32_000
MAX_INCLUDES = 16

Include = Literal[
    "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
    "message.input_image.image_url", "computer_call_output.output.image_url", "code_interpreter_call.outputs",
    "reasoning.encrypted_content", "message.output_text.logprobs",
]
Model = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_CHARS)]
Instructions = Annotated[str, Field(max_length=MAX_INSTRUCTIONS_CHARS)]


class TextFormatText(RequestModel):
    type: Literal["text"]


class TextFormatJsonObject(RequestModel):
    type: Literal["json_object"]


class TextFormatJsonSchema(RequestModel):
    """Structured output: the reply is JSON that validates against ``schema``."""

    type: Literal["json_schema"]
    name: Name
    schema_: Annotated[dict[str, Any], Field(alias="schema")]
    description: Annotated[str, Field(max_length=4_096)] | None = None
    strict: bool | None = None


TextFormat = Annotated[TextFormatText | TextFormatJsonObject | TextFormatJsonSchema,
                       Field(discriminator="type")]


class Text(RequestModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(RequestModel):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class RequestOptions(RequestModel):
    """What a request may set besides its input; each field left out (or ``null``) comes from the next layer
    (turn, then conversation defaults, then the server's ``PARLEY_DEFAULT_REQUEST``)."""

    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: Text | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: Annotated[int, Field(ge=16), BeforeValidator(integral)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: Annotated[list[Include], Field(max_length=MAX_INCLUDES)] | None = None
    prompt_cache_key: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    safety_identifier: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    def options(self) -> dict[str, Any]:
        """The fields given, as the JSON that goes upstream (none of them ``null``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, include=OPTION_FIELDS)


OPTION_FIELDS = frozenset(RequestOptions.model_fields)
"""The Responses fields a request may set: what ``resolve`` merges and the worker sends."""


class RequestDefaults(RequestOptions):
    """A conversation's defaults: the options, and the model and instructions its turns get unless they name
    their own."""

    model: Model | None = None
    instructions: Instructions | None = None

    def fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
