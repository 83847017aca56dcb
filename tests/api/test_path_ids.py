"""Hostile ids and headers: a path id that breaks its grammar is a 404 that never reaches Redis, no error
message carries a client's id back at length, and ``x-request-id`` is kept only when short and plain."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from parley.worker.local.background import BackgroundServer
from parley.worker.messages import conversation_of, is_conversation_id, new_turn_id, turn_nonce
from parley.worker.settings import Settings

MALFORMED_CONVERSATIONS = ["conv_" + "x" * 8000, "conv_a}b", "conv_{x}", "conv_a%0A", "conv_a%20b", "nope",
                           "conv_", "conv_a:b", "CONV_abc"]
MALFORMED_TURNS = ["turn_nope", "turn_0123456789abcdef_conv_a}b", "turn_0123456789ABCDEF_conv_abc",
                   "turn_0123456789abcdef_" + "conv_" + "x" * 8000, "turn_0123456789abcdef_conv_a%0A"]


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


def commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command the server has run, leaving out the INFO that asks."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name: int(row["calls"]) for name, row in stats.items() if name != "cmdstat_info"}


def test_the_grammar() -> None:
    """Upstream's ids (``conv_`` + 48 hex) and parley's turn ids pass; braces, separators, newlines, other
    prefixes and overlong ids do not, and a turn id names its conversation only when both parts are sound."""
    real = "conv_69b58644a57081948324470dc5eaec820bd744e943e1aadd"
    turn = new_turn_id(real)
    assert is_conversation_id(real) and is_conversation_id("conv_test") and conversation_of(turn) == real
    assert len(turn_nonce(turn)) == 16 and turn == f"turn_{turn_nonce(turn)}_{real}"
    for bad in ("conv_a}b", "conv_a\n", "conv_a b", "conv_", "conv_" + "a" * 92, "x_conv_a", "conv_a/b"):
        assert not is_conversation_id(bad), bad
    for bad in ("turn_nope", f"{turn}\n", turn.replace("turn_", "turn_x"), new_turn_id("conv_a}")):
        assert conversation_of(bad) is None, bad


def test_malformed_path_ids_are_404_without_touching_redis(http: httpx.Client, redis_client: redis.Redis
                                                           ) -> None:
    """Every route with a path id answers a malformed one 404 ``not_found`` in the envelope, before body
    validation and without a single Redis command; the message quotes at most 64 characters of the id."""
    calls: list[tuple[str, str, dict[str, Any]]] = []
    for conv in MALFORMED_CONVERSATIONS:
        calls += [("GET", f"/v1/conversations/{conv}", {}), ("DELETE", f"/v1/conversations/{conv}", {}),
                  ("POST", f"/v1/conversations/{conv}", {"json": {"metadata": {}}}),
                  ("GET", f"/v1/conversations/{conv}/items", {}),
                  ("POST", f"/v1/conversations/{conv}/turns", {"json": {"input": 1}}),
                  ("GET", f"/v1/conversations/{conv}/events", {})]
    for turn in MALFORMED_TURNS:
        calls += [("GET", f"/v1/turns/{turn}", {}), ("GET", f"/v1/turns/{turn}?wait=5", {}),
                  ("POST", f"/v1/turns/{turn}/cancel", {}), ("GET", f"/v1/turns/{turn}/events", {})]
    before = commands(redis_client)
    for method, url, kwargs in calls:
        response = http.request(method, url, **kwargs)
        assert response.status_code == 404, (method, url[:80], response.text[:200])
        error = response.json()["error"]
        assert error["type"] == "not_found" and error["param"] == "id"
        assert len(error["message"]) < 100, error["message"]
    assert commands(redis_client) == before


def test_a_well_formed_unknown_id_is_still_looked_up(http: httpx.Client) -> None:
    """The grammar only refuses what cannot exist: an unknown id of the right shape is 404 after the lookup,
    and a real conversation is served."""
    assert http.get("/v1/conversations/conv_" + "a" * 48).status_code == 404
    conv = http.post("/v1/conversations", json={}).json()["id"]
    assert is_conversation_id(conv) and http.get(f"/v1/conversations/{conv}").status_code == 200


def test_the_openapi_document_states_the_grammar(http: httpx.Client) -> None:
    """Clients see the id rules: ``pattern`` and ``maxLength`` on every path id."""
    spec = http.get("/openapi.json").json()
    seen = 0
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    seen += 1
                    assert {"pattern", "maxLength"} <= set(parameter["schema"]), (path, parameter)
    assert seen == 10  # six conversation routes, four turn routes


@pytest.mark.parametrize(("given", "kept"), [
    ("abc-123", True), ("Root=1-67891233-abcdef012345678912345678", False), ("a.b:c_d-e", True),
    ("x" * 128, True), ("x" * 129, False), ("two words", False), ('quo"te', False), ("", False),
])
def test_x_request_id_is_kept_only_when_short_and_plain(http: httpx.Client, given: str, kept: bool) -> None:
    """At most 128 characters of ``[A-Za-z0-9._:-]`` come back as given; anything else gets a fresh id."""
    returned = http.get("/healthz", headers={"x-request-id": given}).headers["x-request-id"]
    if kept:
        assert returned == given
    else:
        assert returned != given and returned.startswith("req_") and len(returned) == 20


def test_an_upstream_id_that_breaks_the_grammar_is_refused(settings: Settings, api_http: Callable[..., Any],
                                                           redis_client: redis.Redis) -> None:
    """A provider that makes ids every route would refuse is a 502 at creation, with nothing stored, rather
    than a conversation nobody can reach."""
    async def create(request: Request) -> JSONResponse:
        return JSONResponse({"id": "conversation/" + "9" * 100, "object": "conversation", "created_at": 1,
                             "metadata": {}})

    from parley.api.main import create_app

    upstream = Starlette(routes=[Route("/v1/conversations", create, methods=["POST"])])
    with BackgroundServer(upstream) as fake:
        odd = settings.model_copy(update={"openai_base_url": f"{fake.url}/v1"})
        with BackgroundServer(create_app(odd)) as server, api_http(server.url) as http:
            response = http.post("/v1/conversations", json={})
    assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_bad_id"
    assert len(response.json()["error"]["message"]) < 200 and redis_client.dbsize() == 0
