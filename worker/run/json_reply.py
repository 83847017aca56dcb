"""JSON replies: a turn that asked for ``text.format`` json_schema gets its reply parsed and validated, so a
bot reads ``output_parsed`` instead of trusting the text; a reply that does not parse or validate fails the
turn (``invalid_json_output``) rather than reaching the bot as garbage."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from ..errors import PermanentUpstreamError


def json_schema_format(request: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``text.format`` of a resolved request when it is json_schema (or json_object), else ``None``."""
    text = (request or {}).get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        return fmt
    return None


def parse_reply(text: str, fmt: dict[str, Any]) -> Any:
    """The reply as JSON, validated against the format's schema; ``invalid_json_output`` otherwise."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise PermanentUpstreamError(f"the reply is not JSON: {exc}", reason="invalid_json_output") from None
    schema = fmt.get("schema")
    if fmt.get("type") == "json_schema" and isinstance(schema, dict):
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(part) for part in exc.absolute_path) or "(the top level)"
            raise PermanentUpstreamError(f"the reply does not match the schema at {where}: {exc.message}",
                                         reason="invalid_json_output") from None
        except jsonschema.SchemaError as exc:
            raise PermanentUpstreamError(f"the requested schema is invalid: {exc.message}",
                                         reason="invalid_json_output") from None
    return value
