"""The OpenAPI document as the API really answers: every error in the one ``{"error": ...}`` envelope, the
bearer key on every ``/v1`` operation, event streams and Prometheus text as what they are, and the limits the
routes enforce.

FastAPI documents its own ``{"detail": [...]}`` body for 422s, which parley never sends (api/errors.py
rewrites them); this replaces it and lists, per operation, the errors a client must handle. schemathesis
fuzzes the API from this document (tests/api/test_schemathesis.py), so whatever it leaves out or gets wrong
shows up there as a failure.
"""

from __future__ import annotations

from typing import Any, get_args

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from parley.worker.events.models import EVENT_ADAPTER, EventType

from .routes.events import MAX_SEQ
from .schemas import ErrorEnvelope

DESCRIPTIONS = {
    400: "Malformed JSON or header",
    408: "The body did not arrive within PARLEY_BODY_TIMEOUT_S (body_timeout)",
    401: "Missing or invalid API key (when keys are configured)",
    403: "The key lacks the scope the route needs (forbidden)",
    404: "No such conversation or turn (also any id that breaks its grammar: see the parameter's pattern)",
    409: "Conflict: the turn is no longer queued, the idempotency key was used for another request, tool "
         "outputs that do not match the turn's pending calls, or the conversation is busy under "
         "double_texting=reject (conversation_busy)",
    413: "Body or input too large",
    422: "A field breaks a rule; the message names the field and the rule",
    429: "Mailbox or queue full, or the key over its rate (rate_limited); retry after Retry-After seconds",
    502: "The model provider rejected parley's key or quota (upstream_auth_failed, upstream_quota_exceeded), "
         "or made a conversation id parley cannot serve (upstream_bad_id)",
    503: "Redis or the model provider is unavailable, or too many event streams; retry after Retry-After",
}
COMMON = (401, 403, 429, 503)
"""Every ``/v1`` operation: auth (a missing key, a key without the route's scope), the per-key rate limit, and
Redis being down."""
BY_OPERATION: dict[tuple[str, str], tuple[int, ...]] = {
    ("get", "/readyz"): (503,),
    ("get", "/metrics"): (503,),
    ("post", "/v1/conversations"): (400, 408, 413, 422, 502),
    ("post", "/v1/conversations/{conversation_id}"): (400, 404, 408, 413, 422, 502),
    ("get", "/v1/conversations/{conversation_id}"): (404,),
    ("delete", "/v1/conversations/{conversation_id}"): (404, 502),
    ("get", "/v1/conversations/{conversation_id}/items"): (404, 422, 502),
    ("post", "/v1/conversations/{conversation_id}/turns"): (400, 404, 408, 409, 413, 422, 429),
    ("get", "/v1/turns/{turn_id}"): (404, 422),
    ("post", "/v1/turns/{turn_id}/cancel"): (404, 409),
    ("post", "/v1/turns/{turn_id}/tool_outputs"): (400, 404, 408, 409, 413, 422),
    ("get", "/v1/conversations/{conversation_id}/events"): (400, 404, 422),
    ("get", "/v1/turns/{turn_id}/events"): (400, 404),
}
REF = "#/components/schemas/ErrorEnvelope"
BEARER = "bearerAuth"
SECURITY_SCHEMES = {BEARER: {
    "type": "http", "scheme": "bearer",
    "description": "One of the keys in PARLEY_API_KEYS; without that setting the API takes any request "
                   "(and binds only to loopback)."}}
EVENT_STREAMS = frozenset({("get", "/v1/conversations/{conversation_id}/events"),
                           ("get", "/v1/turns/{turn_id}/events")})
SEQ_PARAMETERS = frozenset({"Last-Event-ID", "after"})
"""The event routes' cursors: an event's ``seq``, which the routes refuse with a 400 past ``MAX_SEQ``."""
PROMETHEUS = "text/plain; version=0.0.4"
REPEATS = {
    ("post", "/v1/conversations"): ("201", "The conversation already bound to this key (get-or-create)"),
    ("post", "/v1/conversations/{conversation_id}/turns"): (
        "202", "The turn an earlier request with this idempotency_key made (a retry): nothing new is queued"),
}
"""Creations answered 200, with the same body, when the thing already exists."""


def digits_at_most(limit: int) -> str:
    """A regex for the decimal strings (leading zeros included) whose value is at most ``limit`` and whose
    length is at most that of ``limit``: what ``routes.events._seq`` takes, so generated cursors are valid."""
    text = str(limit)
    shorter = f"[0-9]{{1,{len(text) - 1}}}" if len(text) > 1 else None
    below = [f"{text[:i]}[0-{int(d) - 1}][0-9]{{{len(text) - i - 1}}}"
             for i, d in enumerate(text) if d != "0"]
    options = [o for o in (shorter, *below, text) if o]
    return "^(?:" + "|".join(options) + ")$"


SEQ_PATTERN = digits_at_most(MAX_SEQ)


def _error(status: int) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[status], "content": {"application/json": {"schema": {"$ref": REF}}}}


def _add_components(components: dict[str, Any], schema: dict[str, Any], name: str) -> None:
    """``schema`` as ``components/schemas/name``, its ``$defs`` beside it. A name already there must be the
    same model (FastAPI's copy may differ in spelling only, e.g. ``default: null``)."""
    def shape(model: dict[str, Any]) -> tuple[object, ...]:
        return model.get("title"), sorted(model.get("properties", {})), model.get("required")

    for key, value in schema.pop("$defs", {}).items():
        if shape(components.setdefault(key, value)) != shape(value):
            raise ValueError(f"two different schemas are both named {key}")
    components[name] = schema


def _sse_event() -> dict[str, Any]:
    """One event of the stream, as schemathesis reads it (Open API 3.1 has ``schema`` describe each event)."""
    return {"type": "object", "required": ["event", "data", "id"], "properties": {
        "event": {"type": "string", "enum": list(get_args(EventType))},
        "id": {"type": "string", "pattern": SEQ_PATTERN, "description": "The event's seq (Last-Event-ID)"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": "#/components/schemas/Event"}}}}


def _success(method: str, path: str, responses: dict[str, Any]) -> None:
    if (method, path) in REPEATS:
        created, description = REPEATS[method, path]
        responses["200"] = {**responses[created], "description": description}
    if (method, path) in EVENT_STREAMS:
        responses["200"] = {"description": "Server-Sent Events: each event's data is one parley event (JSON)",
                            "content": {"text/event-stream": {"schema": _sse_event()}}}
    elif (method, path) == ("get", "/metrics"):
        responses["200"] = {"description": "Prometheus text exposition format",
                            "content": {PROMETHEUS: {"schema": {"type": "string"}}}}


def _cursors(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["name"] in SEQ_PARAMETERS:
            parameter["schema"] = {"type": "string", "pattern": SEQ_PATTERN, "title": parameter["name"],
                                   "description": f"An event seq: digits, at most {MAX_SEQ}"}


def _input_limit(components: dict[str, Any], max_input_chars: int) -> None:
    """``PARLEY_MAX_INPUT_CHARS`` on the input strings: a setting, so not in the pydantic models. A list's
    contents also count together (413 ``input_too_large``), which JSON Schema cannot say."""
    content = components["InputMessage"]["properties"]["content"]
    texts = [*components["CreateTurn"]["properties"]["input"]["anyOf"], *content.get("anyOf", [content])]
    if "InputText" in components:  # a message's text parts
        texts.append(components["InputText"]["properties"]["text"])
    for text in texts:
        if text.get("type") == "string":
            text["maxLength"] = max_input_chars


def document(app: FastAPI, *, max_input_chars: int | None = None) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    top = schema.setdefault("components", {})
    components = top.setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    refs = "#/components/schemas/{model}"
    _add_components(components, ErrorEnvelope.model_json_schema(ref_template=refs), "ErrorEnvelope")
    _add_components(components, EVENT_ADAPTER.json_schema(ref_template=refs), "Event")
    top["securitySchemes"] = SECURITY_SCHEMES
    if max_input_chars is not None:
        _input_limit(components, max_input_chars)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            _success(method, path, responses)
            if (method, path) in EVENT_STREAMS:
                _cursors(operation)
            statuses = set(BY_OPERATION.get((method, path), ()))
            if path.startswith("/v1/"):
                statuses |= set(COMMON)
                operation["security"] = [{BEARER: []}]
            if "422" in responses:
                statuses.add(422)
            for status in sorted(statuses):
                responses[str(status)] = _error(status)
    return schema


def install(app: FastAPI, *, max_input_chars: int | None = None) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, max_input_chars=max_input_chars)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
