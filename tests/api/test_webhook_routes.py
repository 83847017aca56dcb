"""The conversation's webhook over HTTP: accepted on create, stored, returned on reads, refused with 422 in
the error envelope when it could not be delivered."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from test_routes import assert_envelope

from parley.worker.webhooks.policy import MAX_URL_CHARS


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


def test_a_webhook_url_is_stored_and_returned(http: httpx.Client) -> None:
    """POST /v1/conversations with webhook_url (and webhook_events) returns them, and so does every read."""
    body = {"webhook_url": "https://bot.example.com/parley", "webhook_events": ["turn.completed"]}
    created = http.post("/v1/conversations", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["webhook_url"] == body["webhook_url"]
    assert created.json()["webhook_events"] == ["turn.completed"]
    read = http.get(f"/v1/conversations/{created.json()['id']}").json()
    assert (read["webhook_url"], read["webhook_events"]) == (body["webhook_url"], ["turn.completed"])
    plain = http.post("/v1/conversations", json={}).json()
    assert plain["webhook_url"] is None and plain["webhook_events"] is None


@pytest.mark.parametrize("body", [{"webhook_url": "ftp://bot.example.com/x"}, {"webhook_url": "not a url"},
                                  {"webhook_url": "https://x.example/" + "a" * MAX_URL_CHARS},
                                  {"webhook_url": "https://x.example/", "webhook_events": ["response.delta"]},
                                  {"webhook_url": "https://x.example/", "webhook_events": []}])
def test_a_webhook_that_could_not_be_delivered_is_422(http: httpx.Client, body: dict[str, object]) -> None:
    """A non-http(s) URL, a malformed or too long one, or event types a webhook cannot get: 422, envelope,
    with the field named."""
    response = http.post("/v1/conversations", json=body)
    assert_envelope(response, 422, param="webhook_events" if "webhook_events" in body else "webhook_url")
