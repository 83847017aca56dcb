"""The OpenAPI document tells the truth about errors, and ``/docs`` works with no network."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


@pytest.fixture(name="spec")
def _spec(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def test_errors_are_documented_as_the_envelope_never_as_detail(spec: dict[str, Any]) -> None:
    """FastAPI's ``{"detail": ...}`` 422 body, which parley never sends, is gone; every error response of every
    ``/v1`` operation is the ``{"error": {...}}`` envelope."""
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # FastAPI's body is {"detail": [ValidationError]}; a request field may well be named detail (an image's).
    assert "ValidationError" not in spec["components"]["schemas"]
    assert "schemas/ValidationError" not in json.dumps(spec)
    envelope = spec["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
            if path.startswith("/v1/"):
                assert {"401", "503"} <= set(errors), (method, path)
            for status, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path, status)


def test_the_statuses_the_api_answers_are_documented(http: httpx.Client, spec: dict[str, Any]) -> None:
    """Real bad requests get statuses the document lists for their operation."""
    conv = http.post("/v1/conversations", json={}).json()["id"]
    turns = f"/v1/conversations/{conv}/turns"
    answered = {
        ("post", "/v1/conversations/{conversation_id}/turns"): [
            http.post(turns, content=b"{nope", headers={"content-type": "application/json"}).status_code,
            http.post(turns, json={"input": 1}).status_code,
            http.post(turns, json={"input": "x" * 40_000}).status_code,
            http.post("/v1/conversations/conv_missing/turns", json={"input": "x"}).status_code],
        ("post", "/v1/turns/{turn_id}/cancel"): [http.post("/v1/turns/turn_nope/cancel").status_code],
        ("get", "/v1/conversations/{conversation_id}/items"): [
            http.get(f"/v1/conversations/{conv}/items", params={"limit": 0}).status_code],
    }
    for (method, path), statuses in answered.items():
        documented = set(spec["paths"][path][method]["responses"])
        assert {str(s) for s in statuses} <= documented, (method, path, statuses, documented)


def test_docs_page_needs_no_cdn(http: httpx.Client) -> None:
    """``/docs`` loads Swagger UI from parley itself: every script and stylesheet it names is served here."""
    page = http.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", page.text)
    assert assets and all(asset.startswith("/") for asset in assets), assets
    for asset in assets:
        served = http.get(asset)
        assert served.status_code == 200 and len(served.content) > 10_000, asset
