"""The count of queued turns behind the global cap (``PARLEY_GLOBAL_QUEUE_CAP``) stays exact on every answer of
``POST …/turns``: one Redis round trip raises it with the enqueue script, and the answers that add no turn
take it back."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from parley.worker.store.keys import Keys


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


def _conv(http: httpx.Client) -> str:
    response = http.post("/v1/conversations", json={})
    assert response.status_code == 201
    return str(response.json()["id"])


def _total(redis_client: redis.Redis) -> int:
    return int(redis_client.get(Keys().queued_total) or 0)


def test_only_accepted_turns_are_counted(http: httpx.Client, redis_client: redis.Redis) -> None:
    """Accepted, repeated, refused and superseded turns: the count moves by the turns that wait."""
    conv, before = _conv(http), _total(redis_client)
    url = f"/v1/conversations/{conv}/turns"
    assert http.post(url, json={"input": "a", "idempotency_key": "k1"}).status_code == 202
    assert _total(redis_client) == before + 1
    assert http.post(url, json={"input": "a", "idempotency_key": "k1"}).status_code == 200  # the same turn
    assert http.post(url, json={"input": "b", "idempotency_key": "k1"}).status_code == 409  # key reused
    assert http.post(url, json={"input": "c", "double_texting": "reject"}).status_code == 409  # busy
    assert http.post("/v1/conversations/conv_" + "0" * 48 + "/turns", json={"input": "d"}).status_code == 404
    assert _total(redis_client) == before + 1
    # ``latest``: the waiting turn ends superseded, the new one waits instead.
    assert http.post(url, json={"input": "e", "double_texting": "latest"}).status_code == 202
    assert _total(redis_client) == before + 1
    assert http.post(url, json={"input": "f"}).status_code == 202
    assert _total(redis_client) == before + 2


def test_a_flushed_script_cache_still_counts_once(http: httpx.Client, redis_client: redis.Redis) -> None:
    """After Redis lost its scripts (a restart, SCRIPT FLUSH) the enqueue script is sent again: the turn is
    accepted and counted once."""
    conv, before = _conv(http), _total(redis_client)
    redis_client.script_flush()
    response = http.post(f"/v1/conversations/{conv}/turns", json={"input": "after the flush"})
    assert response.status_code == 202, response.text
    assert _total(redis_client) == before + 1
    assert redis_client.llen(Keys().inbox(conv)) == 1
