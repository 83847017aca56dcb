"""schemathesis fuzzes every operation of the OpenAPI document against the API served by uvicorn (real
embedded Redis, the emulator upstream, API keys on), with all its default checks, ``ignored_auth`` included.

Half the generated ids are real: conversations with items and ended turns made beforehand (a schemathesis
dictionary), so the fuzz reaches the routes' work and not only their 404s. ``DELETE`` gets conversations of
its own, which leaves the others for the operations after it. Nothing is left out of the run: the event
stream of a conversation never ends by itself, so schemathesis reads it for a bounded time or number of
events; a turn's stream and ``wait=`` end at once for an ended turn.

CI runs ``PARLEY_FUZZ_EXAMPLES`` (default 25) examples per operation and mode; the big run is
``python bench/fuzz.py --examples 1000`` (README, Tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openai import OpenAI
from pydantic import SecretStr
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import IgnoredAuth

from parley.api.openapi import BY_OPERATION
from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings

EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "25"))
KEY = "fuzz-key-1"
CONVERSATIONS = 4
EVENTS = "/v1/conversations/{conversation_id}/events"
STREAM_S = 1.5
"""How long schemathesis reads a conversation's event stream that sends nothing more."""


@dataclass
class Seeded:
    url: str
    conversations: list[str]
    doomed: list[str]
    turns: list[str]


def _seed(http: httpx.Client, emulator: EmulatorServer, url: str, doomed: int) -> Seeded:
    """Conversations with upstream items and two ended (cancelled) turns each, and some to be deleted."""
    upstream = OpenAI(base_url=emulator.base_url, api_key="x")
    seeded = Seeded(url, [], [], [])
    for i in range(CONVERSATIONS):
        conv = http.post("/v1/conversations", json={"metadata": {"n": str(i)}}).json()["id"]
        upstream.conversations.items.create(conv, items=[{"role": "user", "content": f"m{j}"}
                                                         for j in range(3)])
        for j in range(2):
            turn = http.post(f"/v1/conversations/{conv}/turns", json={"input": f"t{j}"}).json()["id"]
            assert http.post(f"/v1/turns/{turn}/cancel").status_code == 200
            seeded.turns.append(turn)
        seeded.conversations.append(conv)
    seeded.doomed = [http.post("/v1/conversations", json={}).json()["id"] for _ in range(doomed)]
    return seeded


def config(seeded: Seeded) -> SchemathesisConfig:
    def bound(dictionary: str) -> dict[str, Any]:
        return {"dictionary": dictionary, "probability": 0.5}

    return SchemathesisConfig.from_dict({
        "base-url": seeded.url,
        "request-timeout": 30,
        "auth": {"openapi": {"bearerAuth": {"bearer": KEY}}},
        # The key is given, not generated: negative cases break the request rather than only its key (which
        # ignored_auth tries, with no key and a wrong one, on every operation).
        "generation": {"with-security-parameters": False},
        "dictionaries": {"conversations": {"values": seeded.conversations},
                         "doomed": {"values": seeded.doomed}, "turns": {"values": seeded.turns}},
        "parameters": {"path.conversation_id": bound("conversations"), "path.turn_id": bound("turns")},
        # 413 is how an input over PARLEY_MAX_INPUT_CHARS (the document's maxLength) is refused.
        "checks": {"negative_data_rejection": {"expected-statuses": [
            "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]}},
        "operations": [
            {"include-method": "DELETE", "include-path": "/v1/conversations/{conversation_id}",
             "parameters": {"path.conversation_id": bound("doomed")}},
            {"include-path": EVENTS, "request-timeout": STREAM_S, "max-stream-events": 2},
        ],
    })


@pytest.fixture(name="seeded")
def _seeded(settings: Settings, emulator: EmulatorServer, api_http: Callable[..., httpx.Client]
            ) -> Iterator[Seeded]:
    from parley.api.main import create_app

    keyed = settings.model_copy(update={"api_keys": [SecretStr(KEY)]})
    with BackgroundServer(create_app(keyed)) as server, api_http(server.url, KEY) as http:
        yield _seed(http, emulator, server.url, doomed=max(4, EXAMPLES // 5))


@pytest.fixture(name="api_schema")
def _api_schema(seeded: Seeded) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{seeded.url}/openapi.json", config=config(seeded))


def _expressible(case: Case) -> bool:
    """Whether a generated valid body keeps to the rules JSON Schema cannot say: function tools with distinct
    names (``uniqueItems`` compares whole items). The rule has its own test (BAD_TURNS in tests/api/test_request_routes.py);
    a body breaking it is a 422, which the fuzz would count as a valid request refused."""
    body = case.body if isinstance(case.body, dict) else {}
    for tools in (body.get("tools"), (body.get("defaults") or {}).get("tools")
                  if isinstance(body.get("defaults"), dict) else None):
        if isinstance(tools, list):
            names = [t.get("name") for t in tools if isinstance(t, dict) and t.get("type") == "function"]
            if len(set(names)) < len(names):
                return False
    return True


def fuzz(operation: Any, mode: GenerationMode, examples: int) -> int:
    """Run ``examples`` generated cases of ``operation`` through every default check; how many ran."""
    ran = 0

    # schemathesis' own from_fixture loader cannot run under pytest 9.2 (it renames the test through
    # Node._nodeid, which that pytest removed): hence its documented as_strategy() under @given.
    strategy = operation.as_strategy(mode)
    if mode is GenerationMode.POSITIVE:
        strategy = strategy.filter(_expressible)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case: Case) -> None:
        nonlocal ran
        ran += 1
        case.call_and_validate()

    check()
    return ran


# Listed rather than read from the document at collection, so each operation and mode is its own test; the
# first test checks the list is the document's.
OPERATIONS = sorted([("get", "/healthz"), *BY_OPERATION])
NOTHING_TO_BREAK = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"),
                    ("get", "/v1/conversations/{conversation_id}"),
                    ("delete", "/v1/conversations/{conversation_id}"), ("post", "/v1/turns/{turn_id}/cancel")}
"""No input but an id, which may be any string (an unknown one is a 404): no request is invalid, so these get
only positive cases (and ignored_auth's requests without a key or with a wrong one)."""
CASES = [(*operation, mode) for operation in OPERATIONS for mode in GenerationMode
         if mode is not GenerationMode.NEGATIVE or operation not in NOTHING_TO_BREAK]


def test_every_documented_operation_is_fuzzed(api_schema: BaseSchema) -> None:
    """The fuzz list below is the document's operations, so an operation added later is fuzzed too."""
    documented = {(operation.method.lower(), operation.path)
                  for result in api_schema.get_all_operations() if (operation := result.ok())}
    assert documented == set(OPERATIONS)


@pytest.mark.fuzz
@pytest.mark.timeout(max(120, EXAMPLES * 2))
@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g}" for m, p, g in CASES])
def test_operation_keeps_to_its_document(api_schema: BaseSchema, method: str, path: str, mode: GenerationMode,
                                         record_property: Callable[[str, object], None]) -> None:
    """Generated requests, valid (positive) or not (negative), get only documented statuses and bodies and
    never a 5xx; valid ones are accepted and invalid ones refused; a missing or wrong bearer key is refused
    (``ignored_auth``). All of schemathesis' default checks, at ``PARLEY_FUZZ_EXAMPLES`` examples."""
    ran = fuzz(api_schema[path][method.upper()], mode, EXAMPLES)
    record_property("examples", ran)
    assert ran > 0


def test_ignored_auth_fails_an_api_that_takes_any_request(settings: Settings) -> None:
    """The fuzz is not blind to auth: the same run against parley without PARLEY_API_KEYS (which takes any
    request, though the document says bearerAuth) fails with ignored_auth."""
    from parley.api.main import create_app

    with BackgroundServer(create_app(settings)) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json",
                                               config=config(Seeded(server.url, ["c"], ["c"], ["t"])))
        with pytest.raises(FailureGroup) as caught:
            fuzz(schema["/v1/conversations"]["POST"], GenerationMode.POSITIVE, 3)
    assert any(isinstance(failure, IgnoredAuth) for failure in caught.value.exceptions), caught.value
