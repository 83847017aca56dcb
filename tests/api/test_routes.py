"""The HTTP contract (design §4): conversations, turns, errors in one envelope, auth."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from conftest import open_listeners, wait_until
from pydantic import SecretStr

from parley.worker.events.models import parse_event
from parley.worker.local.background import BackgroundServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


@pytest.fixture(name="conv")
def _conv(http: httpx.Client) -> str:
    response = http.post("/v1/conversations", json={"metadata": {"team": "T1"}})
    assert response.status_code == 201
    return str(response.json()["id"])


def assert_envelope(response: httpx.Response, status: int, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) <= {"type", "message", "param"} and error["type"] and error["message"]
    if param is not None:
        assert error.get("param") == param


def queued(redis_client: redis.Redis, conv: str) -> int:
    return int(redis_client.llen(Keys().inbox(conv)))


class TestConversations:
    def test_delete_cancels_the_queued_turns(self, http: httpx.Client, conv: str, redis_client: redis.Redis
                                             ) -> None:
        """Deleting a conversation ends its queued turns as ``cancelled`` with a ``turn.cancelled`` event each
        (reason ``conversation_deleted``) on the replies stream, instead of leaving them to run and fail later;
        the turns are gone with it (404) and nothing new is taken."""
        turns = [http.post(f"/v1/conversations/{conv}/turns", json={"input": f"m{i}", "metadata": {"n": str(i)}}
                           ).json()["id"] for i in range(3)]
        before = int(redis_client.get(Keys().queued_total) or 0)
        assert http.delete(f"/v1/conversations/{conv}").status_code == 200
        for t in turns:
            assert_envelope(http.get(f"/v1/turns/{t}"), 404)
        events = [parse_event(fields["data"]) for _, fields in redis_client.xrange(Keys().replies)]
        cancelled = [e for e in events if e.type == "turn.cancelled"]
        assert [(e.turn_id, e.reason, e.metadata) for e in cancelled] == [  # type: ignore[union-attr]
            (t, "conversation_deleted", {"n": str(i)}) for i, t in enumerate(turns)]
        assert int(redis_client.get(Keys().queued_total) or 0) == before - 3
        assert_envelope(http.post(f"/v1/conversations/{conv}/turns", json={"input": "late"}), 404)

    def test_after_delete_nothing_of_it_is_readable(self, http: httpx.Client, conv: str,
                                                    redis_client: redis.Redis) -> None:
        """Once deleted, its turns (whose records hold the users' texts), their event streams, the
        conversation's events and its idempotency keys are gone: every read is 404, the old key finds no
        conversation, and Redis keeps nothing under its hash tag but the cancellations, for seconds."""
        url = f"/v1/conversations/{conv}/turns"
        turn = http.post(url, json={"input": "a secret", "idempotency_key": "Ev-del"}).json()["id"]
        assert http.get(f"/v1/turns/{turn}").status_code == 200
        assert http.delete(f"/v1/conversations/{conv}").status_code == 200
        assert_envelope(http.get(f"/v1/turns/{turn}"), 404, "id")
        assert_envelope(http.get(f"/v1/turns/{turn}", params={"wait": 1}), 404, "id")
        assert_envelope(http.get(f"/v1/turns/{turn}/events"), 404)
        assert_envelope(http.post(f"/v1/turns/{turn}/cancel"), 404)
        assert_envelope(http.get(f"/v1/conversations/{conv}/events"), 404)
        assert_envelope(http.post(url, json={"input": "a secret", "idempotency_key": "Ev-del"}), 404)
        assert_envelope(http.delete(f"/v1/conversations/{conv}"), 404)
        left = set(redis_client.scan_iter(match=f"parley:{{{conv}}}:*"))
        assert left == {Keys().events(conv)}  # no webhook: no ``deleted``
        stream = [parse_event(fields["data"]) for _, fields in redis_client.xrange(Keys().events(conv))]
        assert [(e.type, e.turn_id) for e in stream] == [("turn.cancelled", turn)]
        assert "a secret" not in str(redis_client.xrange(Keys().events(conv)))

    def test_get_or_create_by_key(self, http: httpx.Client) -> None:
        first = http.post("/v1/conversations", json={"key": "slack:T1:C2:1712345.678"})
        again = http.post("/v1/conversations", json={"key": "slack:T1:C2:1712345.678"})
        assert first.status_code == 201 and again.status_code == 200
        assert first.json()["id"] == again.json()["id"]

    def test_parallel_get_or_create_gives_one_conversation(self, http: httpx.Client) -> None:
        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(lambda _: http.post("/v1/conversations", json={"key": "k-par"}).json()["id"],
                               range(8)))
        assert len(ids) == 1

    def test_read_with_queue_state_and_delete(self, http: httpx.Client, conv: str) -> None:
        http.post(f"/v1/conversations/{conv}/turns", json={"input": "hi"})
        body = http.get(f"/v1/conversations/{conv}").json()
        assert body["pending"] == 1 and body["running_turn"] is None and body["metadata"] == {"team": "T1"}
        assert http.delete(f"/v1/conversations/{conv}").json()["deleted"] is True
        assert_envelope(http.get(f"/v1/conversations/{conv}"), 404)
        assert_envelope(http.post(f"/v1/conversations/{conv}/turns", json={"input": "x"}), 404)

    def test_update_replaces_metadata_here_and_upstream(self, http: httpx.Client, conv: str,
                                                          emulator: object) -> None:
        """POST /v1/conversations/{id} with metadata replaces it in parley's record and in the upstream
        conversation and returns the conversation; an empty body changes nothing; unknown ids are 404 and
        unknown fields or bad metadata 422, all in the envelope."""
        from openai import OpenAI

        updated = http.post(f"/v1/conversations/{conv}", json={"metadata": {"topic": "billing"}})
        assert updated.status_code == 200, updated.text
        assert updated.json()["id"] == conv and updated.json()["metadata"] == {"topic": "billing"}
        assert http.get(f"/v1/conversations/{conv}").json()["metadata"] == {"topic": "billing"}
        upstream = OpenAI(base_url=emulator.base_url, api_key="x")  # type: ignore[attr-defined]
        assert upstream.conversations.retrieve(conv).metadata == {"topic": "billing"}
        assert http.post(f"/v1/conversations/{conv}", json={}).json()["metadata"] == {"topic": "billing"}
        assert_envelope(http.post("/v1/conversations/conv_nope", json={"metadata": {}}), 404, "id")
        assert_envelope(http.post(f"/v1/conversations/{conv}", json={"webhook": "x"}), 422, "webhook")
        assert_envelope(http.post(f"/v1/conversations/{conv}", json={"metadata": {"k": "v" * 513}}), 422,
                        "metadata")

    def test_items_proxy_paginates(self, http: httpx.Client, conv: str, emulator: object) -> None:
        from openai import OpenAI

        upstream = OpenAI(base_url=emulator.base_url, api_key="x")  # type: ignore[attr-defined]
        upstream.conversations.items.create(conv, items=[{"role": "user", "content": f"m{i}"} for i in range(3)])
        page = http.get(f"/v1/conversations/{conv}/items", params={"order": "asc", "limit": 2}).json()
        assert [i["content"][0]["text"] for i in page["data"]] == ["m0", "m1"] and page["has_more"] is True
        rest = http.get(f"/v1/conversations/{conv}/items",
                        params={"order": "asc", "after": page["last_id"]}).json()
        assert [i["content"][0]["text"] for i in rest["data"]] == ["m2"] and rest["has_more"] is False
        assert_envelope(http.get(f"/v1/conversations/{conv}/items", params={"limit": 0}), 422, "limit")
        assert_envelope(http.get(f"/v1/conversations/{conv}/items", params={"after": "msg_nope"}), 404)


class TestTurns:
    def test_accept_returns_202_with_position(self, http: httpx.Client, conv: str) -> None:
        first = http.post(f"/v1/conversations/{conv}/turns", json={"input": "one", "metadata": {"ch": "C1"}})
        second = http.post(f"/v1/conversations/{conv}/turns", json={"input": [{"role": "user", "content": "two"}]})
        assert first.status_code == 202 and first.json()["status"] == "queued" and first.json()["position"] == 1
        assert second.json()["position"] == 2
        turn = http.get(f"/v1/turns/{first.json()['id']}").json()
        assert turn["status"] == "queued" and turn["metadata"] == {"ch": "C1"} and turn["attempts"] == 0

    def test_idempotency_key_reused_with_another_request_is_409(self, http: httpx.Client, conv: str,
                                                              redis_client: redis.Redis) -> None:
        """A retried POST gets its turn back (200); a new message under an old key is refused, not dropped."""
        url = f"/v1/conversations/{conv}/turns"
        first = http.post(url, json={"input": "hi", "idempotency_key": "Ev9"})
        assert http.post(url, json={"input": "hi", "idempotency_key": "Ev9"}).status_code == 200
        for changed in ({"input": "bye"}, {"input": "hi", "model": "other"}, {"input": "hi", "metadata": {"a": "b"}}):
            reused = http.post(url, json={**changed, "idempotency_key": "Ev9"})
            assert_envelope(reused, 409, "idempotency_key")
            assert reused.json()["error"]["type"] == "idempotency_key_reused"
            assert first.json()["id"] in reused.json()["error"]["message"]
        assert queued(redis_client, conv) == 1

    def test_idempotency_key_20_in_parallel(self, http: httpx.Client, conv: str,
                                            redis_client: redis.Redis) -> None:
        def post(_: int) -> tuple[int, str]:
            r = http.post(f"/v1/conversations/{conv}/turns", json={"input": "hi", "idempotency_key": "Ev123"})
            return r.status_code, r.json()["id"]

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(post, range(20)))
        assert len({turn_id for _, turn_id in results}) == 1
        assert sorted(status for status, _ in results) == [200] * 19 + [202]
        assert queued(redis_client, conv) == 1

    def test_full_mailbox_is_429_with_retry_after(self, settings: Settings, conv: str,
                                                 api_http: Callable[..., httpx.Client]) -> None:
        from parley.api.main import create_app

        small = settings.model_copy(update={"mailbox_cap": 2})
        with BackgroundServer(create_app(small)) as server, api_http(server.url) as http:
            for text in ("a", "b"):
                assert http.post(f"/v1/conversations/{conv}/turns", json={"input": text}).status_code == 202
            full = http.post(f"/v1/conversations/{conv}/turns", json={"input": "c"})
            assert_envelope(full, 429)
            assert int(full.headers["retry-after"]) >= 1

    def test_cancel_a_queued_turn(self, http: httpx.Client, conv: str, redis_client: redis.Redis) -> None:
        turn_id = http.post(f"/v1/conversations/{conv}/turns", json={"input": "x"}).json()["id"]
        cancelled = http.post(f"/v1/turns/{turn_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert_envelope(http.post(f"/v1/turns/{turn_id}/cancel"), 409)
        assert queued(redis_client, conv) == 0
        assert_envelope(http.post("/v1/turns/turn_nope/cancel"), 404)


BAD_TURNS = [
    (b"{not json", 400, None),
    (b"[]", 422, None),
    (b"{}", 422, "input"),
    (b'{"input": ""}', 422, "input"),
    (b'{"input": 5}', 422, None),
    (b'{"input": []}', 422, None),
    (b'{"input": [{"role": "robot", "content": "x"}]}', 422, None),
    (b'{"input": "x", "metadata": {' + b",".join(b'"k%d": "v"' % i for i in range(17)) + b"}}", 422, "metadata"),
    (b'{"input": "x", "metadata": {"k": "' + b"v" * 513 + b'"}}', 422, "metadata"),
    (b'{"input": "x", "surprise": 1}', 422, "surprise"),
    (b'{"input": "ok", "metadata": {"k": "\\udfff"}}', 422, "metadata"),
    (b'{"input": "\\ud800 alone"}', 422, "input"),
    (b'{"input": [{"role": "user", "content": "\\udfff"}]}', 422, "input[0].content"),
    (b'{"input": "x", "idempotency_key": ""}', 422, "idempotency_key"),
    (b'{"input": "' + b"x" * 40_000 + b'"}', 413, "input"),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD_TURNS)
def test_bad_turns_get_4xx_and_enqueue_nothing(http: httpx.Client, conv: str, redis_client: redis.Redis,
                                               body: bytes, status: int, param: str | None) -> None:
    response = http.post(f"/v1/conversations/{conv}/turns", content=body,
                         headers={"content-type": "application/json"})
    assert_envelope(response, status, param)
    assert queued(redis_client, conv) == 0


PLAIN_MESSAGES = [
    (b'{"input": [{"role": "robot", "content": "x"}]}', "input[0].role",
     "input[0].role must be one of 'user', 'assistant', 'system' or 'developer' (got 'robot')."),
    (b'{"input": 5}', "input", "input must be a string or a list."),
    (b"{}", "input", "input is required."),
    (b'{"input": ""}', "input", "input must not be empty."),
    (b'{"input": [{"role": "user"}]}', "input[0].content", "input[0].content is required."),
    (b'{"input": "x", "surprise": 1}', "surprise", "surprise is not a field of this request."),
    (b'{"input": "x", "idempotency_key": "a b"}', "idempotency_key",
     "idempotency_key must not contain spaces or curly braces (got 'a b')."),
    (b'{"input": "x", "metadata": {"k": 1}}', "metadata.k", "metadata.k must be a string."),
    (b"[]", None, "The request body must be a JSON object."),
]


@pytest.mark.parametrize(("body", "param", "message"), PLAIN_MESSAGES)
def test_422s_are_plain_sentences_naming_the_field_and_rule(http: httpx.Client, conv: str, body: bytes,
                                                           param: str | None, message: str) -> None:
    """Validation errors say which field broke which rule in words, not pydantic's union-branch jargon."""
    response = http.post(f"/v1/conversations/{conv}/turns", content=body,
                         headers={"content-type": "application/json"})
    assert_envelope(response, 422)
    assert (response.json()["error"]["message"], response.json()["error"].get("param")) == (message, param)


def test_a_body_without_a_json_content_type_says_so(http: httpx.Client, conv: str) -> None:
    """A JSON body sent without ``Content-Type: application/json`` is told to send the header."""
    response = http.post(f"/v1/conversations/{conv}/turns", content=b'{"input": "x"}')
    assert_envelope(response, 422)
    assert "Content-Type: application/json" in response.json()["error"]["message"]


def test_oversized_body_is_413(http: httpx.Client, conv: str) -> None:
    assert_envelope(http.post(f"/v1/conversations/{conv}/turns", content=b"x" * 300_000,
                              headers={"content-type": "application/json"}), 413)


def test_chunked_body_over_the_limit_is_413_before_it_is_read(settings: Settings, conv: str,
                                                             api_http: Callable[..., httpx.Client]) -> None:
    """A body without Content-Length (chunked) is cut off at PARLEY_MAX_BODY_BYTES: 413 in the envelope with a
    key; without one, 401 before any of it is read (tests/e2e/test_operations.py shows the API's memory stays
    flat)."""
    from parley.api.main import create_app

    def chunks() -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(2 * 1024):
            yield b"x" * 1024

    keyed = settings.model_copy(update={"api_keys": [SecretStr("k-1")]})
    with BackgroundServer(create_app(keyed)) as server, api_http(server.url) as http:
        for headers, status, kind in (({}, 401, "unauthorized"),
                                      ({"authorization": "Bearer k-1"}, 413, "body_too_large")):
            response = http.post(f"/v1/conversations/{conv}/turns", content=chunks(),
                                 headers={"content-type": "application/json", **headers})
            assert_envelope(response, status)
            assert response.json()["error"]["type"] == kind


def test_lone_surrogate_in_conversation_metadata_is_422(http: httpx.Client) -> None:
    """A string that is not encodable text is refused at the door, not a 500 (issue: poison turns)."""
    response = http.post("/v1/conversations", content=b'{"metadata": {"k": "\\udfff"}}',
                         headers={"content-type": "application/json"})
    assert_envelope(response, 422, "metadata")


def test_turns_for_unknown_conversations_leave_nothing_in_redis(http: httpx.Client,
                                                                redis_client: redis.Redis) -> None:
    """A 404 for a made-up conversation id (here 8 KB long) writes nothing that stays: not even the reaper's
    index entry."""
    made_up = "conv_" + "x" * 8000
    assert_envelope(http.post(f"/v1/conversations/{made_up}/turns", json={"input": "x"}), 404)
    assert redis_client.zcard(Keys().active) == 0 and redis_client.dbsize() == 0


@pytest.mark.slow
def test_three_thousand_posts_to_unknown_conversations_write_nothing(http: httpx.Client,
                                                                    redis_client: redis.Redis) -> None:
    """3,000 posts to made-up (well-formed) conversation ids are 404s that leave Redis as it was: no key, the
    reaper's index empty, memory within noise."""
    redis_client.set("anchor", "1")  # so used_memory is measured on a live keyspace
    before = int(redis_client.info("memory")["used_memory"])
    ids = [f"conv_{n:048x}" for n in range(3000)]
    with ThreadPoolExecutor(8) as pool:
        statuses = set(pool.map(lambda c: http.post(f"/v1/conversations/{c}/turns", json={"input": "x"}
                                                    ).status_code, ids))
    assert statuses == {404}
    assert redis_client.zcard(Keys().active) == 0 and redis_client.dbsize() == 1
    assert int(redis_client.info("memory")["used_memory"]) - before < 512 * 1024


def test_a_deterministic_redis_error_is_not_retry_shortly(http: httpx.Client, redis_client: redis.Redis) -> None:
    """A Redis error reply that repeats on every try (here WRONGTYPE) is a 500, not a 503 with Retry-After that
    clients would honour forever."""
    redis_client.set(Keys().conversation("conv_wrong"), "not a hash")
    response = http.get("/v1/conversations/conv_wrong")
    assert response.status_code == 500 and "retry-after" not in response.headers
    assert response.json()["error"]["type"] == "internal_error"


def test_a_damaged_conversation_record_is_still_served(http: httpx.Client, conv: str,
                                                       redis_client: redis.Redis) -> None:
    """A conversation whose stored fields do not parse (metadata not an object, created_at not a number) is
    read with those fields empty, not a 500 for as long as it exists; it can still be deleted."""
    redis_client.hset(Keys().conversation(conv), mapping={"metadata": "[1", "created_at": "soon"})
    response = http.get(f"/v1/conversations/{conv}")
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {} and response.json()["created_at"] == 0
    assert http.delete(f"/v1/conversations/{conv}").status_code == 200


def test_unknown_ids_are_404(http: httpx.Client) -> None:
    assert_envelope(http.get("/v1/turns/turn_nope"), 404)
    assert_envelope(http.get("/v1/conversations/conv_nope"), 404)
    assert_envelope(http.post("/v1/conversations/conv_nope/turns", json={"input": "x"}), 404)
    assert_envelope(http.get("/v1/nothing-here"), 404)


class TestAuth:
    @pytest.fixture(name="secured")
    def _secured(self, settings: Settings) -> Iterator[str]:
        from parley.api.main import create_app

        with BackgroundServer(create_app(settings.model_copy(update={"api_keys": _keys("k-one,k-two")}))) as s:
            yield s.url

    @pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic k-one", "Bearer"])
    def test_missing_or_bad_key_is_401(self, secured: str, header: str | None,
                                       redis_client: redis.Redis) -> None:
        headers = {"authorization": header} if header else {}
        response = httpx.post(f"{secured}/v1/conversations", json={}, headers=headers)
        assert_envelope(response, 401)
        assert redis_client.dbsize() == 0

    def test_any_configured_key_works(self, secured: str) -> None:
        for key in ("k-one", "k-two"):
            response = httpx.post(f"{secured}/v1/conversations", json={},
                                  headers={"authorization": f"Bearer {key}"})
            assert response.status_code == 201

    def test_health_needs_no_key(self, secured: str) -> None:
        assert httpx.get(f"{secured}/healthz").status_code == 200
        assert httpx.get(f"{secured}/readyz").json() == {"status": "ready"}


def _keys(raw: str) -> list[object]:
    return Settings(_env_file=None, api_keys=raw).api_keys  # type: ignore[return-value]


def test_openapi_docs_are_served(http: httpx.Client) -> None:
    assert http.get("/docs").status_code == 200
    assert "/v1/conversations/{conversation_id}/turns" in http.get("/openapi.json").json()["paths"]


def test_listeners_beyond_the_cap_get_503(settings: Settings, conv: str, api_http: Callable[..., httpx.Client],
                                          redis_client: redis.Redis) -> None:
    """With PARLEY_MAX_LISTENERS=2, a third event stream (or long-poll) is 503 ``too_many_listeners`` with
    Retry-After; the two share the fan-out hub's one Redis connection, and the listeners gauge counts them.
    Once a stream leaves, its place is free again."""
    from parley.api.fanout import CLIENT_NAME
    from parley.api.main import create_app

    def held() -> int:
        return sum(1 for c in redis_client.client_list() if c.get("name") == CLIENT_NAME)

    small = settings.model_copy(update={"max_listeners": 2})
    with BackgroundServer(create_app(small)) as server, api_http(server.url) as http:
        before = open_listeners(server.url)  # the gauge is per process, and other tests' servers ran in this one
        turn_id = http.post(f"/v1/conversations/{conv}/turns", json={"input": "x"}).json()["id"]
        with http.stream("GET", f"/v1/conversations/{conv}/events") as one, \
                http.stream("GET", f"/v1/turns/{turn_id}/events") as two:
            assert one.status_code == two.status_code == 200
            wait_until(lambda: open_listeners(server.url) == before + 2, timeout_s=5, message="two listeners")
            wait_until(lambda: held() == 1, timeout_s=5, message="the hub's reader connection")
            third = http.get(f"/v1/conversations/{conv}/events")
            assert_envelope(third, 503)
            assert third.json()["error"]["type"] == "too_many_listeners" and int(third.headers["retry-after"]) > 0
            assert_envelope(http.get(f"/v1/turns/{turn_id}", params={"wait": 1}), 503)
            assert held() == 1
        wait_until(lambda: open_listeners(server.url) == before, timeout_s=5, message="the listeners to leave")
        assert http.get(f"/v1/turns/{turn_id}", params={"wait": 0.2}).status_code == 200
