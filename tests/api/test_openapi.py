"""The OpenAPI document tells the truth (errors, auth, media types, limits), and ``/docs`` works with no
network."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from parley.worker.settings import Settings


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


def test_every_v1_operation_takes_the_bearer_key_and_health_does_not(spec: dict[str, Any]) -> None:
    """The document declares HTTP bearer auth and asks for it (and documents the 401) on every ``/v1``
    operation; health, readiness and metrics are open, as the routes are."""
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1/"):
                assert operation["security"] == [{"bearerAuth": []}] and "401" in operation["responses"], path
            else:
                assert "security" not in operation and "401" not in operation["responses"], path
    assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])


def test_streams_and_metrics_are_documented_as_what_they_send(http: httpx.Client,
                                                              spec: dict[str, Any]) -> None:
    """The event routes answer ``text/event-stream`` (each event: its type, its seq as id, a parley event as
    data) and ``/metrics`` Prometheus text, not JSON; the metrics media type is the one actually sent."""
    for path in ("/v1/conversations/{conversation_id}/events", "/v1/turns/{turn_id}/events"):
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]
        event = content["text/event-stream"]["schema"]
        assert event["required"] == ["event", "data", "id"]
        assert "turn.completed" in event["properties"]["event"]["enum"]
        assert event["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/Event"}
    assert "oneOf" in spec["components"]["schemas"]["Event"]
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain; version=0.0.4"]
    assert http.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")


def test_creations_that_find_their_thing_document_200(spec: dict[str, Any]) -> None:
    """Get-or-create by key and a retried turn answer 200 with the same body as the 201/202."""
    for path, created in (("/v1/conversations", "201"), ("/v1/conversations/{conversation_id}/turns", "202")):
        responses = spec["paths"][path]["post"]["responses"]
        assert responses["200"]["content"] == responses[created]["content"], path


def _validator(spec: dict[str, Any], name: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator({"components": spec["components"],
                                            "$ref": f"#/components/schemas/{name}"})


def _metadata(pairs: int = 1, key: str = "k", value: str = "v") -> dict[str, str]:
    return {f"{key}{i}" if pairs > 1 else key: value for i in range(pairs)}


METADATA_CASES = [_metadata(16), _metadata(17), _metadata(key="k" * 64), _metadata(key="k" * 65),
                  _metadata(key=""), _metadata(value="v" * 512), _metadata(value="v" * 513), {}]


@pytest.mark.parametrize("metadata", METADATA_CASES, ids=lambda m: f"{len(m)}x{max(map(len, m), default=0)}"
                         f"/{max(map(len, m.values()), default=0)}")
def test_metadata_limits_in_the_document_are_the_servers(http: httpx.Client, spec: dict[str, Any],
                                                         metadata: dict[str, str]) -> None:
    """16 pairs, keys of 1 to 64 characters, values up to 512: the document's JSON Schema takes exactly the
    metadata the API takes, on conversations and on turns."""
    conv = http.post("/v1/conversations", json={}).json()["id"]
    turn = {"input": "x", "metadata": metadata}
    for name, url, body in (("CreateConversation", "/v1/conversations", {"metadata": metadata}),
                            ("CreateTurn", f"/v1/conversations/{conv}/turns", turn)):
        documented = _validator(spec, name).is_valid(body)
        status = http.post(url, json=body).status_code
        assert (status < 300) == documented and status in (200, 201, 202, 422), (name, status)


def test_the_input_limit_is_the_setting(spec: dict[str, Any], settings: Settings) -> None:
    """A string input, or one message, over PARLEY_MAX_INPUT_CHARS is documented as too long."""
    validator = _validator(spec, "CreateTurn")
    limit = settings.max_input_chars
    assert validator.is_valid({"input": "x" * limit}) and not validator.is_valid({"input": "x" * (limit + 1)})
    assert not validator.is_valid({"input": [{"role": "user", "content": "x" * (limit + 1)}]})


def test_seq_pattern_takes_exactly_what_the_event_routes_take() -> None:
    """``digits_at_most(MAX_SEQ)`` matches a cursor exactly when the routes' own check takes it."""
    from parley.api.errors import ApiError
    from parley.api.openapi import SEQ_PATTERN, digits_at_most
    from parley.api.routes.events import MAX_SEQ, _seq

    def taken(value: str) -> bool:
        try:
            _seq(value, "after")
        except ApiError:
            return False
        return True

    rng = random.Random(7)
    values = [str(MAX_SEQ), str(MAX_SEQ + 1), str(MAX_SEQ - 1), "0", "0" * 19, "0" * 20, "9" * 18, "9" * 19,
              "", "1_0", "+1", "١", *(str(rng.randrange(10 ** rng.randrange(1, 21))) for _ in range(2000)),
              *(str(MAX_SEQ - rng.randrange(10 ** 6)) for _ in range(200)),
              *(str(MAX_SEQ)[:i] + str(d) + "0" * (18 - i) for i in range(19) for d in range(10))]
    for value in values:
        assert bool(re.fullmatch(SEQ_PATTERN, value)) == taken(value), value
    assert all(re.fullmatch(digits_at_most(305), str(n)) for n in range(306))
    assert not any(re.fullmatch(digits_at_most(305), str(n)) for n in range(306, 1000))


def test_whitespace_patterns_agree_with_the_checks() -> None:
    """The spelled-out whitespace classes are what pydantic's ``\\s`` and ``str.isspace`` mean, code point by
    code point, so a generator reading the document and the server agree on every character."""
    from pydantic import TypeAdapter

    from parley.api.schemas import IDENT_PATTERN, URL_TEXT, Ident

    ident, url_text = TypeAdapter(Ident), re.compile(URL_TEXT)
    for code in range(0x3001):
        char = chr(code)
        assert bool(url_text.fullmatch(char)) == (not char.isspace()), hex(code)
        try:
            ident.validate_python("a" + char)
            taken = True
        except ValueError:
            taken = False
        assert bool(re.fullmatch(IDENT_PATTERN, "a" + char)) == taken, hex(code)
    assert all(char.isspace() == (not url_text.fullmatch(char)) for char in map(chr, range(0x3001, 0x110000))
               if not 0xD800 <= ord(char) < 0xE000)


WEBHOOK_URLS = ["https://bot.example.com/parley", "HTTP://A", "http://u:p@h:8080/p?q=1#f", "http://a:65535",
                "http://a:65536", "http://a:0", "http://a:", "http://a:x", "ftp://a", "http://", "http://@/x",
                "http://:80", "http://a b", "http://a/\x1c", "http://a/\u3000", "http://a/\ufeff", "https://a/%zz",
                "http://[::1]/", "http://ü.example/", "not a url", "https://x/" + "a" * 2048]


@pytest.mark.parametrize("url", WEBHOOK_URLS)
def test_the_webhook_url_pattern_takes_only_what_the_check_takes(url: str) -> None:
    """Every URL the document's pattern takes, the server's check takes; the other way round too, but for
    spellings the pattern leaves out on purpose (IPv6 literals, non-ASCII hosts)."""
    from parley.api.schemas import WEBHOOK_URL_PATTERN
    from parley.worker.webhooks.policy import MAX_URL_CHARS, check_webhook_url

    try:
        check_webhook_url(url)
        taken = True
    except ValueError:
        taken = False
    documented = bool(re.fullmatch(WEBHOOK_URL_PATTERN, url)) and len(url) <= MAX_URL_CHARS
    assert documented == taken or (taken and ("[" in url or not url.isascii())), (documented, taken)
