"""Request validation with OpenAI's limits; every failure is a 400 ``invalid_request_error`` with
``param``."""

from __future__ import annotations

from typing import Any

from . import objects
from .objects import JSON
from .store import ApiError

MAX_ITEMS_PER_CALL = 20
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
ROLES = ("user", "assistant", "system", "developer")


def metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid type for 'metadata': expected an object.", param=param)
    if len(value) > MAX_METADATA_PAIRS:
        raise ApiError(400, f"Invalid 'metadata': too many properties. Expected at most "
                            f"{MAX_METADATA_PAIRS}, got {len(value)}.", param=param)
    for key, val in value.items():
        if len(key) > MAX_METADATA_KEY:
            raise ApiError(400, f"Invalid 'metadata': key '{key[:20]}...' is longer than "
                                f"{MAX_METADATA_KEY} characters.", param=param)
        if not isinstance(val, str):
            raise ApiError(400, f"Invalid type for 'metadata.{key}': expected a string.", param=param)
        if len(val) > MAX_METADATA_VALUE:
            raise ApiError(400, f"Invalid 'metadata.{key}': string too long. Expected at most "
                                f"{MAX_METADATA_VALUE} characters.", param=param)
    return dict(value)


def _content(role: str, content: Any, param: str) -> list[JSON]:
    part_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        return [{"type": part_type, "text": content}]
    if isinstance(content, list) and content:
        parts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("text"), str) \
                    or part.get("type") not in ("input_text", "output_text"):
                raise ApiError(400, "Invalid content part.", param=f"{param}.content[{index}]")
            parts.append({"type": part["type"], "text": part["text"]})
        return parts
    raise ApiError(400, "Invalid 'content': expected a string or a list of content parts.",
                   param=f"{param}.content")


def message_item(raw: Any, param: str) -> JSON:
    """A stored message item from an input item (``EasyInputMessage`` or a full message)."""
    if not isinstance(raw, dict):
        raise ApiError(400, "Invalid item.", param=param, code="invalid_item")
    if raw.get("type", "message") != "message" or raw.get("role") not in ROLES:
        raise ApiError(400, "Invalid item.", param=param, code="invalid_item")
    if "status" in raw and raw["status"] is None:
        raise ApiError(400, f"Unknown parameter: '{param}.status'.", param=f"{param}.status",
                       code="unknown_parameter")
    role = raw["role"]
    parts = _content(role, raw.get("content"), param)
    if role == "assistant":
        parts = [objects.output_text_part(p["text"]) for p in parts]
    return {"type": "message", "id": objects.new_id("msg"), "status": "completed", "role": role,
            "content": parts}


def items(value: Any, param: str, *, required: bool) -> list[JSON]:
    if value is None:
        if required:
            raise ApiError(400, f"Missing required parameter: '{param}'.", param=param,
                           code="missing_required_parameter")
        return []
    if not isinstance(value, list):
        raise ApiError(400, f"Invalid type for '{param}': expected an array.", param=param)
    if len(value) > MAX_ITEMS_PER_CALL:
        raise ApiError(400, f"Invalid '{param}': array too long. "
                            f"Expected at most {MAX_ITEMS_PER_CALL} items.", param=param)
    return [input_item(raw, f"{param}[{i}]") for i, raw in enumerate(value)]


def response_input(value: Any) -> list[JSON]:
    if isinstance(value, str):
        return [message_item({"role": "user", "content": value}, "input")]
    if isinstance(value, list):
        return [input_item(raw, f"input[{i}]") for i, raw in enumerate(value)]
    raise ApiError(400, "Invalid type for 'input': expected a string or an array of items.", param="input")


def input_item(raw: Any, param: str) -> JSON:
    """A message, a ``function_call`` (a client replaying one) or a ``function_call_output``, as stored."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("function_call", "function_call_output"):
        return message_item(raw, param)
    required = ("call_id", "name", "arguments") if kind == "function_call" else ("call_id", "output")
    for key in required:
        if key not in raw:
            raise ApiError(400, f"Missing required parameter: '{param}.{key}'.", param=f"{param}.{key}",
                           code="missing_required_parameter")
        value = raw[key]
        if not (isinstance(value, str) or (key == "output" and isinstance(value, list))):
            raise ApiError(400, f"Invalid type for '{param}.{key}': expected a string.",
                           param=f"{param}.{key}")
    given = raw.get("id")
    item_id = given if isinstance(given, str) and given else objects.new_id(
        "fc" if kind == "function_call" else "fco")
    return {"id": item_id, "type": kind, "status": "completed", **{key: raw[key] for key in required}}


def given_ids(value: Any) -> list[str]:
    """The item ids a client sent in ``input``/``items`` (resending a stored one is a duplicate)."""
    if not isinstance(value, list):
        return []
    return [raw["id"] for raw in value if isinstance(raw, dict) and isinstance(raw.get("id"), str)]


def conversation_ref(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return str(value["id"])
    raise ApiError(400, "Invalid 'conversation': expected a conversation id or {'id': ...}.",
                   param="conversation")


def limit(raw: str | None) -> int:
    if raw is None:
        return 20
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "Invalid 'limit': expected an integer.", param="limit") from None
    if not 1 <= value <= 100:
        raise ApiError(400, f"Invalid 'limit': integer below minimum value or above maximum value. "
                            f"Expected a value between 1 and 100, got {value}.", param="limit")
    return value


def order(raw: str | None) -> str:
    if raw is None:
        return "desc"
    if raw not in ("asc", "desc"):
        raise ApiError(400, f"Invalid 'order': expected one of 'asc' or 'desc', got '{raw}'.", param="order")
    return raw


def page(all_items: list[JSON], *, after: str | None, limit_: int, order_: str) -> JSON:
    ordered = all_items if order_ == "asc" else list(reversed(all_items))
    start = 0
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise ApiError(404, f"Item with id '{after}' not found.", param="after")
        start = ids.index(after) + 1
    chunk = ordered[start:start + limit_]
    return objects.item_list(chunk, has_more=start + limit_ < len(ordered))
