"""A turn's ``input`` as a message list: text, image and file parts (Slack and Discord attachments).

An image or a file is sent by reference (a URL or an uploaded file id) or inline (a ``data:`` URL, base64
``file_data``); inline content counts against the API's body cap (PARLEY_MAX_BODY_BYTES), and the text parts
against PARLEY_MAX_INPUT_CHARS.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from .base import RequestModel

MAX_MESSAGES = 20
MAX_PARTS = 16
"""Content parts of one message: Slack and Discord both allow 10 attachments, plus the text."""
MAX_URL_CHARS = 2_048
"""An ``http(s)`` URL of an image or a file; a ``data:`` URL is bounded by the body cap only."""
MAX_FILE_ID_CHARS = 256
MAX_FILENAME_CHARS = 256


def _check_url(value: str) -> str:
    if value.startswith("data:"):
        return value
    if not value.lower().startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL or a data: URL")
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"must be at most {MAX_URL_CHARS} characters (a data: URL may be longer)")
    return value


Url = Annotated[str, AfterValidator(_check_url), WithJsonSchema({"anyOf": [
    {"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://", "maxLength": MAX_URL_CHARS},
    {"type": "string", "pattern": "^data:"}]})]
FileId = Annotated[str, Field(min_length=1, max_length=MAX_FILE_ID_CHARS)]


class InputText(RequestModel):
    type: Literal["input_text"]
    text: str


def exactly_one_of(*sources: list[str]) -> list[dict[str, Any]]:
    """JSON Schema for "exactly one of these sources, each given as a string" (a ``null`` counts as absent,
    as it does for the validators)."""

    def given(names: list[str]) -> dict[str, Any]:
        return {"required": names, "properties": {name: {"type": "string"} for name in names}}

    return [{**given(source), "not": {"anyOf": [given(other[:1]) for other in sources if other != source]}}
            for source in sources]


class InputImage(RequestModel):
    """An image by ``image_url`` or by ``file_id`` (exactly one)."""

    # The rule in JSON Schema too, so the API's document says what the validator below refuses.
    model_config = ConfigDict(json_schema_extra={"oneOf": exactly_one_of(["image_url"], ["file_id"])})

    type: Literal["input_image"]
    image_url: Url | None = None
    file_id: FileId | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"
    """OpenAI's default, spelled out: the spec lists ``detail`` as required."""

    @model_validator(mode="after")
    def _one_source(self) -> InputImage:
        if (self.image_url is None) == (self.file_id is None):
            raise ValueError("an input_image needs exactly one of image_url or file_id")
        return self


class InputFile(RequestModel):
    """A file by ``file_id``, ``file_url`` or inline ``file_data`` with its ``filename`` (exactly one)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": exactly_one_of(["file_id"], ["file_url"],
                                                                          ["file_data", "filename"])})

    type: Literal["input_file"]
    file_id: FileId | None = None
    file_url: Url | None = None
    file_data: Annotated[str, Field(min_length=1)] | None = None
    filename: Annotated[str, Field(min_length=1, max_length=MAX_FILENAME_CHARS)] | None = None
    detail: Literal["auto", "low", "high"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputFile:
        if sum(source is not None for source in (self.file_id, self.file_url, self.file_data)) != 1:
            raise ValueError("an input_file needs exactly one of file_id, file_url or file_data")
        if self.file_data is not None and self.filename is None:
            raise ValueError("an input_file with file_data needs its filename")
        return self


Part = Annotated[InputText | InputImage | InputFile, Field(discriminator="type")]


class InputMessage(RequestModel):
    role: Literal["user", "assistant", "system", "developer"]
    content: (Annotated[str, Field(min_length=1)]
              | Annotated[list[Part], Field(min_length=1, max_length=MAX_PARTS)])
    type: Literal["message"] | None = None

    def text_chars(self) -> int:
        if isinstance(self.content, str):
            return len(self.content)
        return sum(len(part.text) for part in self.content if isinstance(part, InputText))


Messages = Annotated[list[InputMessage], Field(min_length=1, max_length=MAX_MESSAGES)]


def message_json(message: InputMessage) -> dict[str, Any]:
    return message.model_dump(mode="json", exclude_none=True)
