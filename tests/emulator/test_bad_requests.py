"""Bad requests to the emulator get OpenAI-style 4xx envelopes, never a 500."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec import validate

from parley.worker.local.emulator import EmulatorServer


@pytest.fixture(name="http")
def _http(emulator: EmulatorServer) -> httpx.Client:
    return httpx.Client(base_url=emulator.base_url, timeout=10)


def _conv(http: httpx.Client) -> str:
    return str(http.post("/conversations", json={}).json()["id"])


CASES = [
    ("GET", "/conversations/conv_missing", None, 404, "conversation_id"),
    ("DELETE", "/conversations/conv_missing", None, 404, "conversation_id"),
    ("GET", "/responses/resp_missing", None, 404, "response_id"),
    ("POST", "/responses", b"{not json", 400, None),
    ("POST", "/responses", b"[1, 2]", 400, None),
    ("POST", "/responses", {"model": "m"}, 400, "input"),
    ("POST", "/responses", {"input": 5, "model": "m"}, 400, "input"),
    ("POST", "/responses", {"input": [{"role": "robot", "content": "x"}]}, 400, "input[0]"),
    ("POST", "/responses", {"input": "x", "conversation": "conv_missing"}, 404, "conversation_id"),
    ("POST", "/responses", {"input": "x", "conversation": 7}, 400, "conversation"),
    ("POST", "/responses", {"input": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, 400, "metadata"),
    ("POST", "/responses", {"input": "x", "metadata": {"k": "v" * 513}}, 400, "metadata"),
    ("POST", "/responses", {"input": "x", "metadata": {"k" * 65: "v"}}, 400, "metadata"),
    ("POST", "/responses", {"input": "x", "metadata": {"emulator_fault": "explode"}}, 400, "metadata"),
    ("POST", "/conversations", {"items": [{"role": "user", "content": "x"}] * 21}, 400, "items"),
    ("POST", "/conversations", {"metadata": "nope"}, 400, "metadata"),
    ("POST", "/responses", {"input": "x", "tools": "nope"}, 400, "tools"),
    ("POST", "/responses", {"input": "x", "tools": [{"name": "f"}]}, 400, "tools[0]"),
    ("POST", "/responses", {"input": "x", "tools": [{"type": "function"}]}, 400, "tools[0].name"),
    ("POST", "/responses", {"input": "x", "tools": [{"type": "function", "name": "a b"}]}, 400, "tools[0].name"),
    ("POST", "/responses", {"input": "x", "tools": [{"type": "function", "name": "f", "parameters": "x"}]}, 400,
     "tools[0].parameters"),
    ("POST", "/responses", {"input": "x", "tools": [{"type": "function", "name": "f"}] * 2}, 400, "tools[1].name"),
    ("POST", "/responses", {"input": "x", "tool_choice": "sometimes"}, 400, "tool_choice"),
    ("POST", "/responses", {"input": "x", "tool_choice": {"type": "function", "name": "f"}}, 400, "tool_choice"),
    ("POST", "/responses", {"input": "x", "parallel_tool_calls": "yes"}, 400, "parallel_tool_calls"),
    ("POST", "/responses", {"input": "x", "text": {"format": {"type": "xml"}}}, 400, "text.format.type"),
    ("POST", "/responses", {"input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}}, 400,
     "text.format.schema"),
    ("POST", "/responses", {"input": [{"type": "function_call_output", "output": "x"}]}, 400, "input[0].call_id"),
    ("POST", "/responses", {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
     400, "input[0].arguments"),
    ("GET", "/no/such/route", None, 404, None),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "param"), CASES)
def test_bad_request_gets_an_envelope(http: httpx.Client, method: str, path: str, body: object, status: int,
                                      param: str | None) -> None:
    kwargs = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
    response = http.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(("query", "param"), [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"),
                                              ("order=up", "order"), ("after=msg_missing", "after")])
def test_bad_item_list_params(http: httpx.Client, query: str, param: str) -> None:
    conv = _conv(http)
    response = http.get(f"/conversations/{conv}/items?{query}")
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["param"] == param


def test_cancel_of_a_foreground_response_is_400(http: httpx.Client) -> None:
    conv = _conv(http)
    done = http.post("/responses", json={"conversation": conv, "input": "x"}).json()
    response = http.post(f"/responses/{done['id']}/cancel")
    assert response.status_code == 400


def test_update_requires_metadata(http: httpx.Client) -> None:
    response = http.post(f"/conversations/{_conv(http)}", json={})
    assert response.status_code == 400 and response.json()["error"]["param"] == "metadata"


def test_empty_input_switch(http: httpx.Client, emulator: EmulatorServer) -> None:
    """UNKNOWN upstream: conversation-bound requests without input are accepted by default; a switch
    rejects them with 400 on ``input``."""
    conv = _conv(http)
    http.post(f"/conversations/{conv}/items", json={"items": [{"role": "user", "content": "hi"}]})
    accepted = http.post("/responses", json={"conversation": conv})
    assert accepted.status_code == 200 and "Reply 1 to: hi" in str(accepted.json()["output"])
    emulator.config.reject_empty_input = True
    rejected = http.post("/responses", json={"conversation": conv})
    assert rejected.status_code == 400 and rejected.json()["error"]["param"] == "input"
