"""The smallest JSON value a JSON Schema accepts, for the emulator's function arguments and JSON replies.

It covers what Structured Outputs and function ``parameters`` use: ``type`` (one or a list), ``properties``
with ``required``, ``items``/``prefixItems`` with ``minItems``, ``enum``, ``const``, ``anyOf``/``oneOf`` (the
first branch), ``allOf`` (merged), local ``$ref`` (``#/$defs/...``, ``#/definitions/...``), string lengths and
common ``format``s, numeric bounds and ``multipleOf``. ``pattern`` is not honoured (docs/emulator.md).
"""

from __future__ import annotations

import math
from typing import Any

FORMATS = {"date-time": "1970-01-01T00:00:00Z", "date": "1970-01-01", "time": "00:00:00Z",
           "email": "a@example.com", "uuid": "00000000-0000-0000-0000-000000000000",
           "uri": "https://example.com", "hostname": "example.com", "ipv4": "127.0.0.1"}
MAX_DEPTH = 32
"""A recursive ``$ref`` stops here (an optional property is left out long before)."""


def minimal_instance(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A value valid against ``schema`` (``True``/``{}`` accept anything: the answer is ``{}``)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return {}
    if "$ref" in schema:
        return minimal_instance(_resolve(root, schema["$ref"]), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return minimal_instance(schema[key][0], root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            resolved = _resolve(root, part["$ref"]) if isinstance(part, dict) and "$ref" in part else part
            merged = _merge(merged, resolved if isinstance(resolved, dict) else {})
        return minimal_instance(merged, root, depth + 1)
    return _typed(schema, _type_of(schema), root, depth)


def _type_of(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        # The first non-null type gives a more useful value; null only when it is the only choice.
        declared = next((t for t in declared if t != "null"), "null")
    if isinstance(declared, str):
        return declared
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "object"


def _typed(schema: dict[str, Any], type_: str, root: Any, depth: int) -> Any:
    if type_ == "object":
        properties = schema.get("properties") or {}
        return {name: minimal_instance(properties.get(name, {}), root, depth + 1)
                for name in schema.get("required") or []}
    if type_ == "array":
        prefix = [minimal_instance(s, root, depth + 1) for s in schema.get("prefixItems") or []]
        extra = max(0, int(schema.get("minItems", 0)) - len(prefix))
        items = schema.get("items", {})
        return prefix + [minimal_instance(items, root, depth + 1) for _ in range(extra)]
    if type_ == "string":
        return _string(schema)
    if type_ in ("integer", "number"):
        return _number(schema, integer=type_ == "integer")
    if type_ == "boolean":
        return False
    return None


def _string(schema: dict[str, Any]) -> str:
    if schema.get("format") in FORMATS:
        return FORMATS[schema["format"]]
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    text = "text" if low <= 4 else "x" * low
    return text[:int(high)] if high is not None else text


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    # Zero when allowed, else the nearest bound (an exclusive one pushed inwards by one).
    value: float = 0
    if "minimum" in schema and schema["minimum"] > value:
        value = schema["minimum"]
    if "exclusiveMinimum" in schema and schema["exclusiveMinimum"] >= value:
        value = schema["exclusiveMinimum"] + 1
    if "maximum" in schema and schema["maximum"] < value:
        value = schema["maximum"]
    if "exclusiveMaximum" in schema and schema["exclusiveMaximum"] <= value:
        value = schema["exclusiveMaximum"] - 1
    step = schema.get("multipleOf")
    if step:
        value = math.ceil(value / step) * step
    return int(math.ceil(value)) if integer else value


def _resolve(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        key = part.replace("~1", "/").replace("~0", "~")
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    merged = dict(left)
    for key, value in right.items():
        if key == "properties":
            merged["properties"] = {**merged.get("properties", {}), **value}
        elif key == "required":
            merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
        else:
            merged.setdefault(key, value)
    return merged
