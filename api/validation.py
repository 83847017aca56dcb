"""Request validation errors as plain sentences: which field, which rule, what was sent.

pydantic reports a union field once per branch (``input`` -> ``constrained-str`` and ``list[InputMessage]``),
so the branch a client meant is chosen by walking its own body: the deepest error on a path that exists in
it wins ("input[0].role must be one of ..." rather than "Input should be a valid string").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .schemas import IDENT_PATTERN

LOCATIONS = frozenset({"body", "query", "path", "header"})
KINDS = {"string": "a string", "list": "a list", "dict": "an object", "model": "an object",
         "model_attributes": "an object", "int": "an integer", "float": "a number", "bool": "true or false"}
RULES = {
    IDENT_PATTERN: "must not contain spaces or curly braces",
}
"""Sentences for the patterns parley uses, so a client reads the rule rather than a regex."""
LIMITS = {
    "string_too_long": ("max_length", "must be at most {} characters"),
    "too_short": ("min_length", "must have at least {} item(s)"),
    "too_long": ("max_length", "must have at most {} items"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than": ("lt", "must be less than {}"),
}
"""Length and bound rules: the ``ctx`` key that holds the limit, and the rule around it."""
MAX_ECHOED_CHARS = 64
"""A value a client sent is quoted in an error message up to this long: a message never carries a client's
kilobytes back (nor into logs)."""


def clip(value: str, limit: int = MAX_ECHOED_CHARS) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def _path(loc: Sequence[Any], body: Any) -> tuple[str, int]:
    """``input[0].role`` from a pydantic loc, leaving out union branch names; and how deep it reached."""
    text, depth, value = "", 0, body
    parts = list(loc[1:]) if loc and loc[0] in LOCATIONS else list(loc)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int) and isinstance(value, list):
            text, depth, value = f"{text}[{part}]", depth + 1, value[part] if part < len(value) else None
        elif isinstance(part, str) and isinstance(value, dict) and part not in value \
                and part == value.get("type"):
            pass  # the branch of a union tagged by ``type`` (an error of the whole object, e.g. input_image)
        elif isinstance(part, str) and (isinstance(value, dict) and (part in value or last) or value is None):
            text = f"{text}.{part}" if text else part
            depth += 1
            value = value.get(part) if isinstance(value, dict) else None
        # anything else names a branch of a union, not a place in the body
    return text, depth


def _kind(error_type: str) -> str | None:
    for suffix in ("_type", "_parsing"):
        if error_type.endswith(suffix):
            return KINDS.get(error_type.removesuffix(suffix))
    return None


def _limit(field: str, kind: str, ctx: dict[str, Any]) -> str | None:
    """The sentence for a length or bound rule; ``None`` for any other kind of error."""
    if kind == "string_too_short":
        return f"{field} must not be empty." if ctx.get("min_length") == 1 else \
            f"{field} must be at least {ctx.get('min_length')} characters."
    if kind not in LIMITS:
        return None
    key, rule = LIMITS[kind]
    return f"{field} {rule.format(ctx.get(key))}."


def _quoted(given: Any) -> str:
    return repr(clip(given)) if isinstance(given, str) else clip(repr(given))


def _sentence(field: str, error: dict[str, Any], content_type: str | None) -> str:
    kind, ctx, given = error.get("type", ""), error.get("ctx") or {}, error.get("input")
    if not field:
        if _kind(kind) is not None or kind == "missing":
            hint = "" if content_type and "json" in content_type else \
                " (send it with the header Content-Type: application/json)"
            return f"The request body must be a JSON object{hint}."
        return str(error.get("msg", "The request body is invalid."))
    if kind == "missing":
        return f"{field} is required."
    if kind == "extra_forbidden":
        return f"{field} is not a field of this request."
    if (limit := _limit(field, kind, ctx)) is not None:
        return limit
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return f"{field} {RULES.get(pattern, f'must match the pattern {pattern}')} (got {_quoted(given)})."
    if kind == "union_tag_invalid":
        tags = _options(str(ctx.get("expected_tags", "")))
        return f"{field} must be one of {tags} (got {_quoted(ctx.get('tag'))})."
    if kind == "union_tag_not_found":
        return f"{field} is required."
    if kind == "literal_error" or kind == "enum":
        return f"{field} must be one of {ctx.get('expected')} (got {_quoted(given)})."
    if kind == "value_error":
        return f"{field}: {ctx.get('error', error.get('msg'))}."
    if (expected := _kind(kind)) is not None:
        return f"{field} must be {expected}."
    return f"{field}: {error.get('msg', 'invalid value')}."


def _options(tags: str) -> str:
    """pydantic's "'a', 'b', 'c'" as "'a', 'b' or 'c'", like its literal errors."""
    head, _, last = tags.rpartition(", ")
    return f"{head} or {last}" if head else last


def _tagged(field: str, error: dict[str, Any]) -> str:
    """The field of a union's tag (``tools[0].type``) for an error about the tag itself."""
    if error.get("type") not in ("union_tag_invalid", "union_tag_not_found"):
        return field
    tag = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
    return f"{field}.{tag}" if field and tag.isidentifier() else field


def explain(errors: Sequence[dict[str, Any]], body: Any, content_type: str | None) -> tuple[str, str | None]:
    """The message and ``param`` of a 422 for pydantic ``errors`` about ``body``."""
    if not errors:
        return "The request is invalid.", None
    located = [(error, *_path(error.get("loc", ()), body)) for error in errors]
    by_field: dict[str, list[dict[str, Any]]] = {}
    for error, field, _ in located:
        by_field.setdefault(field, []).append(error)
    # Deepest first; at one depth, a rule broken (too short, bad tag) says more than a wrong kind of value.
    deepest, field, _ = max(located, key=lambda entry: (entry[2], _kind(entry[0].get("type", "")) is None))
    group = by_field[field]
    field = _tagged(field, deepest)
    # A value of the wrong kind for a union: name every kind it may be, once.
    kinds = [k for error in group if (k := _kind(error.get("type", ""))) is not None]
    if field and len(group) > 1 and len(kinds) == len(group):
        options = sorted(set(kinds), key=kinds.index)
        message = f"{field} must be {' or '.join(options)}."
    else:
        message = _sentence(field, deepest, content_type)
    return re.sub(r"\.\.$", ".", message), field or None
