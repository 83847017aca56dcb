"""The conversation's webhook over HTTP: accepted on create, stored, returned on reads, refused with 422 in
the error envelope when it could not be delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
import redis.asyncio
from test_routes import assert_envelope

from parley.worker.events.models import parse_event
from parley.worker.store.keys import Keys
from parley.worker.webhooks.policy import MAX_URL_CHARS
from parley.worker.webhooks.store import Target, WebhookStore


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


def test_update_sets_changes_and_clears_the_webhook(http: httpx.Client) -> None:
    """POST /v1/conversations/{id} with webhook_url sets it, with webhook_events alone changes only those, and
    with webhook_url null goes back to the default; fields left out stay."""
    conv = http.post("/v1/conversations", json={"metadata": {"a": "1"}}).json()["id"]
    url = f"/v1/conversations/{conv}"
    first = http.post(url, json={"webhook_url": "https://bot.example.com/hook"})
    assert first.status_code == 200, first.text
    assert (first.json()["webhook_url"], first.json()["metadata"]) == ("https://bot.example.com/hook", {"a": "1"})
    events = http.post(url, json={"webhook_events": ["turn.failed"]}).json()
    assert (events["webhook_url"], events["webhook_events"]) == ("https://bot.example.com/hook", ["turn.failed"])
    cleared = http.post(url, json={"webhook_url": None}).json()
    assert cleared["webhook_url"] is None and cleared["metadata"] == {"a": "1"}
    assert_envelope(http.post(url, json={"webhook_url": "ftp://x"}), 422, "webhook_url")


def test_deleting_a_conversation_sends_its_cancellations_to_its_webhook(
        http: httpx.Client, redis_client: redis.Redis) -> None:
    """The turns a deletion cancels reach the replies stream, and the dispatcher still finds the deleted
    conversation's own webhook for them."""
    conv = http.post("/v1/conversations", json={"webhook_url": "https://bot.example.com/hook",
                                                 "webhook_events": ["turn.cancelled"]}).json()["id"]
    turns = [http.post(f"/v1/conversations/{conv}/turns", json={"input": f"m{i}"}).json()["id"] for i in range(2)]
    assert http.delete(f"/v1/conversations/{conv}").status_code == 200
    replies = [parse_event(f["data"]) for _, f in redis_client.xrange(Keys().replies)]
    assert [(e.type, e.turn_id) for e in replies] == [("turn.cancelled", t) for t in turns]

    async def target() -> Target | None:
        client = redis.asyncio.Redis.from_url(_url(redis_client), decode_responses=True)
        try:
            return (await WebhookStore(client, Keys()).targets({conv}, None))[conv]
        finally:
            await client.aclose()

    found = asyncio.run(target())
    assert found is not None and found.url == "https://bot.example.com/hook"
    assert found.events == frozenset({"turn.cancelled"})


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
