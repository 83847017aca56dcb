"""The OpenAPI document as the API really answers: every error in the one ``{"error": ...}`` envelope.

FastAPI documents its own ``{"detail": [...]}`` body for 422s, which parley never sends (api/errors.py
rewrites them); this replaces it and lists, per operation, the errors a client must handle.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .schemas import ErrorEnvelope

DESCRIPTIONS = {
    400: "Malformed JSON or header",
    408: "The body did not arrive within PARLEY_BODY_TIMEOUT_S (body_timeout)",
    401: "Missing or invalid API key (when PARLEY_API_KEYS is set)",
    404: "No such conversation or turn (also any id that breaks its grammar: see the parameter's pattern)",
    409: "Conflict: the turn is no longer queued, or the idempotency key was used for another request",
    413: "Body or input too large",
    422: "A field breaks a rule; the message names the field and the rule",
    429: "Mailbox or queue full; retry after Retry-After seconds",
    502: "The model provider rejected parley's key or quota (upstream_auth_failed, upstream_quota_exceeded), "
         "or made a conversation id parley cannot serve (upstream_bad_id)",
    503: "Redis or the model provider is unavailable, or too many event streams; retry after Retry-After",
}
COMMON = (401, 503)
"""Every ``/v1`` operation: auth, and Redis being down."""
BY_OPERATION: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/conversations"): (400, 408, 413, 422, 502),
    ("post", "/v1/conversations/{conversation_id}"): (400, 404, 408, 413, 422, 502),
    ("get", "/v1/conversations/{conversation_id}"): (404,),
    ("delete", "/v1/conversations/{conversation_id}"): (404, 502),
    ("get", "/v1/conversations/{conversation_id}/items"): (404, 422, 502),
    ("post", "/v1/conversations/{conversation_id}/turns"): (400, 404, 408, 409, 413, 422, 429),
    ("get", "/v1/turns/{turn_id}"): (404, 422),
    ("post", "/v1/turns/{turn_id}/cancel"): (404, 409),
    ("get", "/v1/conversations/{conversation_id}/events"): (400, 404, 422),
    ("get", "/v1/turns/{turn_id}/events"): (400, 404),
}
REF = "#/components/schemas/ErrorEnvelope"


def _error(status: int) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[status], "content": {"application/json": {"schema": {"$ref": REF}}}}


def document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(envelope.pop("$defs", {}))
    components["ErrorEnvelope"] = envelope
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            statuses = set(BY_OPERATION.get((method, path), ()))
            if path.startswith("/v1/"):
                statuses |= set(COMMON)
            if "422" in responses:
                statuses.add(422)
            for status in sorted(statuses):
                responses[str(status)] = _error(status)
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
