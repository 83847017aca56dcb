"""Client-side retries, typed errors and stream timeouts, against a real scripted HTTP server (tiny_server):
503s, 429s, dropped connections and streams that only ping are hard to get from parley on demand."""

from __future__ import annotations

import asyncio
import time

import pytest
from tiny_server import PING, Reply, event, tiny_server, url

from parley import (
    AsyncParleyClient,
    ConflictError,
    InternalServerError,
    ParleyAPIError,
    ParleyClient,
    ParleyConnectionError,
    ParleyTimeoutError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    UnavailableError,
)

FAST = RetryPolicy(max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05)
CONV = {"id": "conv_c", "object": "conversation", "created_at": 1, "metadata": {}, "key": None,
        "pending": 0, "running_turn": None}
ACCEPTED = {"id": "turn_t", "object": "turn", "conversation_id": "conv_c", "status": "queued", "position": 1,
            "created_at": 1.0}


def envelope(type_: str, message: str = "no", param: str | None = None) -> dict[str, object]:
    return {"error": {"type": type_, "message": message, **({"param": param} if param else {})}}


def test_503_is_retried_after_retry_after_with_one_request_id() -> None:
    """A 503 with Retry-After is retried after that many seconds; every attempt carries the same
    x-request-id, so the server's logs join them."""
    unavailable = Reply(503, envelope("unavailable"), headers={"Retry-After": "0.3"})
    with tiny_server(unavailable, Reply(200, CONV)) as server:
        started = time.monotonic()
        conv = ParleyClient(url(server), retry=FAST).get_conversation("conv_c")
        elapsed = time.monotonic() - started
    assert conv.id == "conv_c" and elapsed >= 0.3
    assert len(server.seen) == 2 and len({s.headers["x-request-id"] for s in server.seen}) == 1


def test_429_past_max_retries_raises_rate_limit_error_with_the_envelope() -> None:
    """A 429 that keeps coming is retried max_retries times, then raised as RateLimitError carrying the
    envelope's type, message and param, the status, the request id and Retry-After."""
    full = Reply(429, envelope("mailbox_full", "full", "input"),
                 headers={"Retry-After": "0", "x-request-id": "req_abc"})
    with tiny_server(fallback=full) as server, pytest.raises(RateLimitError) as caught:
        ParleyClient(url(server), retry=FAST).send_turn("conv_c", "hi")
    error = caught.value
    assert len(server.seen) == FAST.max_retries + 1
    assert (error.status_code, error.type, error.message) == (429, "mailbox_full", "full")
    assert error.param == "input"
    assert error.request_id == "req_abc" and error.retry_after_s == 0.0 and isinstance(error, ParleyAPIError)


def test_other_errors_are_not_retried_and_have_their_own_types() -> None:
    """409 is a ConflictError and 500 an InternalServerError, each after one request; a body that is not
    parley's envelope still gives a typed error."""
    conflict_reply = Reply(409, envelope("not_cancellable", param="id"))
    with tiny_server(conflict_reply, Reply(500, ["not", "an", "envelope"])) as server:
        client = ParleyClient(url(server), retry=FAST)
        with pytest.raises(ConflictError) as conflict:
            client.cancel_turn("turn_t")
        with pytest.raises(InternalServerError) as crash:
            client.get_turn("turn_t")
    assert conflict.value.param == "id" and crash.value.type == "http_error" and len(server.seen) == 2


def test_a_missing_scope_is_permission_denied_and_not_retried() -> None:
    """403 ``forbidden`` (the key lacks the route's scope) is a PermissionDeniedError after one request."""
    with tiny_server(Reply(403, envelope("forbidden"))) as server:
        client = ParleyClient(url(server), retry=FAST)
        with pytest.raises(PermissionDeniedError) as denied:
            client.send_turn("conv_c", "hi")
    assert denied.value.status_code == 403 and denied.value.type == "forbidden" and len(server.seen) == 1


def test_send_turn_retried_after_a_dropped_connection_reuses_its_generated_idempotency_key() -> None:
    """send_turn without an idempotency key makes one per call; a connection dropped mid-request is retried
    with the same key (the server dedupes by it), and the next call gets a new key."""
    with tiny_server(Reply(drop=True), Reply(202, ACCEPTED), Reply(202, ACCEPTED)) as server:
        client = ParleyClient(url(server), retry=FAST)
        assert client.send_turn("conv_c", "hi").id == "turn_t"
        client.send_turn("conv_c", "hi again")
    keys = [seen.body["idempotency_key"] for seen in server.seen]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2] and keys[0].startswith("client-")


def test_a_dropped_cancel_is_not_sent_again() -> None:
    """Cancel is not idempotent (a second one is a 409), so a connection dropped mid-request raises
    ParleyConnectionError after one request instead of retrying."""
    with tiny_server(Reply(drop=True), Reply(200, {})) as server:
        with pytest.raises(ParleyConnectionError) as caught:
            ParleyClient(url(server), retry=FAST).cancel_turn("turn_t")
    assert caught.value.sent and len(server.seen) == 1


def test_refused_connections_are_retried_then_raised() -> None:
    """Nothing listening: every request, idempotent or not, is tried max_retries + 1 times (nothing reached a
    server), then ParleyConnectionError, which is also an httpx.TransportError."""
    import httpx

    with tiny_server() as server:
        dead = url(server)
    started = time.monotonic()
    with pytest.raises(ParleyConnectionError) as caught:
        policy = RetryPolicy(max_retries=2, backoff_base_s=0.2, backoff_max_s=0.2)
        ParleyClient(dead, retry=policy).cancel_turn("t")
    assert not caught.value.sent and isinstance(caught.value, httpx.TransportError)
    assert time.monotonic() - started >= 2 * 0.2 * 0.5  # two jittered backoffs: it did retry


def test_a_stream_with_only_pings_raises_the_idle_timeout() -> None:
    """A turn stream that sends nothing but keep-alive pings raises ParleyTimeoutError after idle_timeout_s,
    without reconnecting."""
    pings = Reply(sse=[event(1), *[PING] * 60], pause_s=0.05)
    with tiny_server(pings) as server:
        client = ParleyClient(url(server), idle_timeout_s=0.5, retry=FAST)
        got, started = [], time.monotonic()
        with pytest.raises(ParleyTimeoutError):
            for e in client.stream_turn("turn_t"):
                got.append(e.seq)
    assert got == [1] and 0.5 <= time.monotonic() - started < 2.0 and len(server.seen) == 1


def test_a_silent_stream_raises_the_idle_timeout() -> None:
    """A stream that sends nothing at all (not even pings) raises ParleyTimeoutError after idle_timeout_s."""
    with tiny_server(Reply(sse=[], hold_s=3.0)) as server:
        client = ParleyClient(url(server), idle_timeout_s=0.4, retry=FAST)
        started = time.monotonic()
        with pytest.raises(ParleyTimeoutError):
            list(client.stream_conversation("conv_c"))
    assert time.monotonic() - started < 2.0


def test_a_dropped_stream_resumes_with_last_event_id() -> None:
    """A conversation stream whose connection ends resumes with Last-Event-ID set to the last event seen,
    so no event is lost or repeated; a 503 on reconnect is retried too."""
    first = Reply(sse=[event(1), event(2)])
    busy = Reply(503, envelope("unavailable"), headers={"Retry-After": "0"})
    second = Reply(sse=[event(3), event(4, "turn.completed", output_text="hi")], hold_s=1.0)
    with tiny_server(first, busy, second) as server:
        client = ParleyClient(url(server), retry=FAST)
        seqs = []
        for e in client.stream_conversation("conv_c"):
            seqs.append(e.seq)
            if e.type == "turn.completed":
                break
    assert seqs == [1, 2, 3, 4]
    assert [s.headers.get("last-event-id") for s in server.seen] == [None, "2", "2"]


def test_async_client_retries_and_times_out_the_same_way() -> None:
    """The async client shares the policy: a 503 then success, and a ping-only stream ends in
    ParleyTimeoutError."""

    async def scenario() -> str:
        unavailable = Reply(503, envelope("unavailable"), headers={"Retry-After": "0"})
        with tiny_server(unavailable, Reply(200, CONV), Reply(sse=[PING] * 40)) as server:
            async with AsyncParleyClient(url(server), retry=FAST, idle_timeout_s=0.4) as client:
                conv = await client.get_conversation("conv_c")
                with pytest.raises(ParleyTimeoutError):
                    async for _ in client.stream_turn("turn_t"):
                        pass
            assert len(server.seen) == 3
            return conv.id

    assert asyncio.run(scenario()) == "conv_c"


def test_unavailable_past_max_retries_is_unavailable_error() -> None:
    """503 that persists ends as UnavailableError after max_retries retries."""
    with tiny_server(fallback=Reply(503, envelope("unavailable"), headers={"Retry-After": "0"})) as server:
        with pytest.raises(UnavailableError):
            ParleyClient(url(server), retry=RetryPolicy(max_retries=1)).get_turn("turn_t")
    assert len(server.seen) == 2
