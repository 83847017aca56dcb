"""The Responses request at the HTTP door (real API on uvicorn, real Redis): a turn's options and a
conversation's defaults are validated with the field named, resolved turn > conversation > server when the
turn is accepted, and stored once in the turn's record; a bad request enqueues nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from test_routes import assert_envelope, queued

from parley.worker.local.background import BackgroundServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

GET_TIME = {"type": "function", "name": "get_time", "description": "The time now.",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}
SERVER = {"temperature": 0.9, "text": {"verbosity": "high"}}


@pytest.fixture(name="http")
def _http(settings: Settings, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    """The API with server-wide defaults (PARLEY_DEFAULT_REQUEST and PARLEY_MODEL)."""
    from parley.api.main import create_app

    served = settings.model_copy(update={"default_request": SERVER, "model": "gpt-server"})
    with BackgroundServer(create_app(served)) as server, api_http(server.url) as client:
        yield client


def _conv(http: httpx.Client, **body: Any) -> str:
    response = http.post("/v1/conversations", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _turn(http: httpx.Client, conv: str, **body: Any) -> dict[str, Any]:
    accepted = http.post(f"/v1/conversations/{conv}/turns", json={"input": "hi", **body})
    assert accepted.status_code == 202, accepted.text
    turn: dict[str, Any] = http.get(f"/v1/turns/{accepted.json()['id']}").json()
    return turn


def _stored(redis_client: redis.Redis, turn: dict[str, Any]) -> dict[str, str]:
    return dict(redis_client.hgetall(Keys().turn(turn["conversation_id"], turn["id"])))


def test_turn_beats_conversation_beats_server(http: httpx.Client, redis_client: redis.Redis) -> None:
    """Each field from the first layer that sets it, resolved at acceptance and shown by GET of the turn;
    the conversation's defaults are returned with it."""
    conv = _conv(http, defaults={"model": "gpt-conv", "instructions": "Be brief.", "tools": [GET_TIME],
                                 "temperature": 0.5})
    assert http.get(f"/v1/conversations/{conv}").json()["defaults"] == {
        "model": "gpt-conv", "instructions": "Be brief.", "tools": [GET_TIME], "temperature": 0.5}
    plain = _turn(http, conv)
    assert plain["model"] == "gpt-conv"
    assert plain["request"] == {"tools": [GET_TIME], "temperature": 0.5, "text": {"verbosity": "high"}}
    own = _turn(http, conv, model="gpt-turn", temperature=0.1, tools=[{"type": "web_search"}],
                tool_choice="required", server_tools=False)
    assert own["model"] == "gpt-turn" and own["server_tools"] == []
    assert own["request"] == {"tools": [{"type": "web_search"}], "temperature": 0.1, "tool_choice": "required",
                              "text": {"verbosity": "high"}}
    stored = _stored(redis_client, own)
    assert json.loads(stored["request"]) == own["request"] and stored["instructions"] == "Be brief."


def test_updated_defaults_apply_to_later_turns_only(http: httpx.Client, redis_client: redis.Redis) -> None:
    """POST /v1/conversations/{id} replaces the defaults as a whole; a turn already queued keeps what it was
    accepted with; ``{}`` removes them, leaving no field in the conversation's record."""
    conv = _conv(http, defaults={"reasoning": {"effort": "low"}})
    before = _turn(http, conv)
    updated = http.post(f"/v1/conversations/{conv}", json={"defaults": {"max_output_tokens": 500}})
    assert updated.status_code == 200 and updated.json()["defaults"] == {"max_output_tokens": 500}
    after = _turn(http, conv)
    assert http.get(f"/v1/turns/{before['id']}").json()["request"]["reasoning"] == {"effort": "low"}
    assert after["request"] == {"max_output_tokens": 500, **SERVER}
    assert http.post(f"/v1/conversations/{conv}", json={"metadata": {"a": "b"}}).json()["defaults"] == {
        "max_output_tokens": 500}
    assert http.post(f"/v1/conversations/{conv}", json={"defaults": {}}).json()["defaults"] == {}
    assert not redis_client.hexists(Keys().conversation(conv), "defaults")
    assert _turn(http, conv)["request"] == SERVER


def test_a_turn_without_options_stores_no_request(settings: Settings, conv: str, api_server: str,
                                                  api_http: Callable[..., httpx.Client],
                                                  redis_client: redis.Redis) -> None:
    """With no options anywhere (no server defaults either), the queued turn's record has no ``request``
    field and GET shows none."""
    with api_http(api_server) as client:
        turn = _turn(client, conv)
    assert turn["request"] is None and "request" not in _stored(redis_client, turn)


@pytest.fixture(name="conv")
def _plain_conv(api_server: str, api_http: Callable[..., httpx.Client]) -> str:
    with api_http(api_server) as client:
        return _conv(client)


def test_the_idempotency_fingerprint_covers_the_options(http: httpx.Client, redis_client: redis.Redis) -> None:
    """The same key with other tools is 409; the same request after the defaults changed is the same turn."""
    conv = _conv(http)
    url = f"/v1/conversations/{conv}/turns"
    body = {"input": "hi", "idempotency_key": "Ev-opt", "tools": [GET_TIME]}
    first = http.post(url, json=body)
    assert_envelope(http.post(url, json={**body, "tools": [{"type": "web_search"}]}), 409, "idempotency_key")
    assert_envelope(http.post(url, json={**body, "server_tools": ["get_time"]}), 409, "idempotency_key")
    http.post(f"/v1/conversations/{conv}", json={"defaults": {"temperature": 0.2}})
    again = http.post(url, json=body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert queued(redis_client, conv) == 1


def test_text_parts_count_against_the_input_cap(http: httpx.Client, redis_client: redis.Redis) -> None:
    """PARLEY_MAX_INPUT_CHARS (32,000 here) counts the text of every part; image and file parts are
    accepted and stored as sent."""
    conv = _conv(http)
    parts = [{"type": "input_text", "text": "x" * 20_000}, {"type": "input_text", "text": "y" * 20_000}]
    too_long = http.post(f"/v1/conversations/{conv}/turns", json={"input": [{"role": "user", "content": parts}]})
    assert_envelope(too_long, 413, "input")
    message = {"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": "https://files.example/cat.png"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}]}
    turn = _turn(http, conv, input=[message])
    stored = json.loads(_stored(redis_client, turn)["input"])
    assert stored[0]["content"][1] == {"type": "input_image", "image_url": "https://files.example/cat.png",
                                       "detail": "auto"}
    assert queued(redis_client, conv) == 1


def _tools(count: int, description: str = "") -> list[dict[str, Any]]:
    return [{"type": "function", "name": f"f{i}", "description": description, "parameters": {}}
            for i in range(count)]


BAD_TURNS = [
    ({"tools": [{"type": "function", "name": "get time", "parameters": {}}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "get_time"}]}, "tools[0].parameters"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "array"}}]}, "tools[0].parameters"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {}, "strict": "yes"}]}, "tools[0].strict"),
    ({"tools": [{"type": "calculator"}]}, "tools[0].type"),
    ({"tools": [{"type": "file_search"}]}, "tools[0].vector_store_ids"),
    ({"tools": _tools(2)[:1] * 2}, "tools"),
    ({"tools": _tools(129)}, "tools"),
    ({"tools": _tools(60, "d" * 1_200)}, "tools"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "browser"}}, "tool_choice"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "see"},
                                             {"type": "input_image", "detail": "low"}]}]}, "input[0].content[1]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "file:///etc/passwd"}]}]},
     "input[0].content[0].image_url"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "abc"}]}]},
     "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}] * 17}]}, "input[0].content"),
    ({"text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format.schema"),
    ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
    ({"temperature": 3}, "temperature"),
    ({"server_tools": "all"}, "server_tools"),
    ({"stream": True}, "stream"),
    ({"tools": [{"type": "mcp", "server_label": "x", "headers": {"k": "\udfff"}}]}, "tools[0]"),
    ({"double_texting": "shout"}, "double_texting"),
    ({"debounce_ms": -1}, "debounce_ms"),
    ({"debounce_ms": 600_001}, "debounce_ms"),
    ({"debounce_ms": "500"}, "debounce_ms"),
    ({"debounce_max_ms": 1.5}, "debounce_max_ms"),
]


@pytest.mark.parametrize(("body", "param"), BAD_TURNS, ids=[param for _, param in BAD_TURNS])
def test_bad_options_are_422_naming_the_field_and_enqueue_nothing(http: httpx.Client, redis_client: redis.Redis,
                                                                   body: dict[str, Any], param: str) -> None:
    conv = _conv(http)
    before = redis_client.get(Keys().queued_total)
    # As ASCII JSON: a lone surrogate (the last case) travels as the escape \udfff, as a client would send it.
    response = http.post(f"/v1/conversations/{conv}/turns", content=json.dumps({"input": "hi", **body}),
                         headers={"content-type": "application/json"})
    assert_envelope(response, 422, param)
    assert queued(redis_client, conv) == 0 and redis_client.get(Keys().queued_total) == before
    assert not list(redis_client.scan_iter(match=Keys().turn(conv, "*")))


BAD_DEFAULTS = [
    ({"temperatur": 1}, "defaults.temperatur"),
    ({"tools": [{"type": "function", "name": "f"}]}, "defaults.tools[0].parameters"),
    ({"tool_choice": "always"}, "defaults.tool_choice"),
    ({"stream": True}, "defaults.stream"),
    ({"model": ""}, "defaults.model"),
    ({"double_texting": "later"}, "defaults.double_texting"),
    ({"debounce_ms": -5}, "defaults.debounce_ms"),
]


@pytest.mark.parametrize(("defaults", "param"), BAD_DEFAULTS, ids=[param for _, param in BAD_DEFAULTS])
def test_bad_defaults_are_422_and_change_nothing(http: httpx.Client, redis_client: redis.Redis,
                                                 defaults: dict[str, Any], param: str) -> None:
    """On create no conversation is made; on update the stored defaults stay as they were."""
    conversations = set(redis_client.scan_iter(match=Keys().conversation("*")))
    assert_envelope(http.post("/v1/conversations", json={"defaults": defaults}), 422, param)
    assert set(redis_client.scan_iter(match=Keys().conversation("*"))) == conversations
    conv = _conv(http, defaults={"top_p": 0.5})
    assert_envelope(http.post(f"/v1/conversations/{conv}", json={"defaults": defaults}), 422, param)
    assert http.get(f"/v1/conversations/{conv}").json()["defaults"] == {"top_p": 0.5}


SENTENCES = [
    ({"tools": [{"type": "calculator"}]},
     "tools[0].type must be one of 'function', 'web_search', 'web_search_2025_08_26', 'web_search_preview', "
     "'web_search_preview_2025_03_11', 'file_search', 'code_interpreter', 'mcp' or 'image_generation' "
     "(got 'calculator')."),
    ({"tools": [{"type": "function", "name": "get time", "parameters": {}}]},
     "tools[0].name: must be 1 to 64 letters, digits, underscores or dashes."),
    ({"tool_choice": "sometimes"},
     "tool_choice must be one of 'none', 'auto' or 'required' (got 'sometimes')."),
    ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "input[0].content[0]: an input_image needs exactly one of image_url or file_id."),
    ({"tools": _tools(129)}, "tools must have at most 128 items."),
]


@pytest.mark.parametrize(("body", "message"), SENTENCES)
def test_the_422s_are_sentences(http: httpx.Client, body: dict[str, Any], message: str) -> None:
    """Errors in the options read as the other validation errors do: the field, the rule, what was sent
    (not pydantic's union-branch names)."""
    response = http.post(f"/v1/conversations/{_conv(http)}/turns", json={"input": "hi", **body})
    assert_envelope(response, 422)
    assert response.json()["error"]["message"] == message
