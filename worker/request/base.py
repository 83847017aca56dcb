"""The base of the request models: unknown fields refused, text that cannot be encoded refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

UNENCODABLE = "text must be valid Unicode (it holds a lone surrogate such as \\udfff)"


def encodable(value: Any) -> bool:
    """Whether ``value`` (JSON as parsed) holds no lone surrogate, which Python takes from JSON's ``\\udfff``
    but no encoder can write: it would fail every later step (the fingerprint, Redis, upstream)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(encodable(k) and encodable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(encodable(v) for v in value)
    if isinstance(value, BaseModel):  # nested models, as a field validator sees them
        return all(encodable(v) for v in value.__dict__.values())
    return True


class RequestModel(BaseModel):
    """A part of the Responses request as parley accepts it: OpenAI's names, unknown fields refused (a typo
    would otherwise be dropped silently, or fail the turn upstream long after it was accepted), and values of
    the JSON type OpenAI wants (strict: ``"yes"`` is no boolean, ``"0.5"`` no number)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _encodable_text(cls, value: Any) -> Any:
        if not encodable(value):
            raise ValueError(UNENCODABLE)
        return value


class PassThrough(BaseModel):
    """A part parley passes through as it is (a hosted tool's settings): the fields it knows are checked, the
    others kept for upstream to judge."""

    model_config = ConfigDict(extra="allow", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _encodable_object(cls, value: Any) -> Any:
        # Checked on the whole raw object: the extra fields are no field a field validator sees.
        if not encodable(value):
            raise ValueError(UNENCODABLE)
        return value


def integral(value: object) -> object:
    """JSON Schema's ``integer`` takes ``16.0`` (a number with no fraction), and so does OpenAI; strict
    pydantic would not. Other values go on to the strict check unchanged (``"16"`` stays refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
