"""The client against a real parley: the API, Celery workers, Redis and the emulator, started by
tests/e2e/test_client_standalone.py, which passes the URL and key in PARLEY_CLIENT_TEST_URL and
PARLEY_CLIENT_TEST_API_KEY (the server's mailbox cap is 2, for the 429 test)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from parley import (
    AsyncParleyClient,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ParleyClient,
    RateLimitError,
)

URL = os.environ.get("PARLEY_CLIENT_TEST_URL", "")
KEY = os.environ.get("PARLEY_CLIENT_TEST_API_KEY")
if not URL:
    pytest.skip("needs a running parley (tests/e2e/test_client_standalone.py starts one)",
                allow_module_level=True)


@pytest.fixture(name="parley")
def _parley() -> Iterator[ParleyClient]:
    with ParleyClient(URL, api_key=KEY) as client:
        yield client


def slow(ms: int) -> dict[str, str]:
    return {"emulator_fault": f"latency={ms}"}


def new_key() -> str:
    return f"client-test-{uuid.uuid4().hex[:8]}"


def test_conversation_routes(parley: ParleyClient) -> None:
    """create (get-or-create by key), get with queue state, update the metadata, delete; then it is gone."""
    key = new_key()
    conv = parley.create_conversation(key=key, metadata={"team": "T1"})
    assert parley.create_conversation(key=key).id == conv.id
    state = parley.get_conversation(conv.id)
    assert state.pending == 0 and state.running_turn is None and state.metadata == {"team": "T1"}
    updated = parley.update_conversation(conv.id, metadata={"team": "T2", "topic": "billing"})
    assert updated.id == conv.id and updated.metadata == {"team": "T2", "topic": "billing"}
    assert parley.get_conversation(conv.id).metadata == {"team": "T2", "topic": "billing"}
    deleted = parley.delete_conversation(conv.id)
    assert deleted.deleted and deleted.id == conv.id
    with pytest.raises(NotFoundError):
        parley.get_conversation(conv.id)


def test_a_turn_from_send_to_reply_and_its_items(parley: ParleyClient) -> None:
    """send_turn, stream_turn (deltas join to the reply), get_turn, wait_for_reply; the items page and the
    iterator over all pages give the user message and the reply."""
    conv = parley.create_conversation(key=new_key()).id
    turn = parley.send_turn(conv, "hello there", metadata={"channel": "C1"})
    events = list(parley.stream_turn(turn.id))
    assert events[-1].type == "turn.completed" and events[-1].metadata == {"channel": "C1"}
    deltas = "".join(e.delta for e in events if e.type == "response.delta")
    done = parley.wait_for_reply(turn.id, timeout_s=30)
    assert done.status.value == "completed" and done.output_text == deltas == events[-1].output_text
    assert parley.get_turn(turn.id).response_id == done.response_id
    page = parley.list_items(conv, limit=1, order="asc")
    assert len(page.data) == 1 and page.has_more and page.data[0]["role"] == "user"
    items = list(parley.iter_items(conv, page_size=1))
    assert [item["role"] for item in items] == ["user", "assistant"]
    assert items[1]["content"][0]["text"] == done.output_text


def test_a_repeated_idempotency_key_gives_the_same_turn(parley: ParleyClient) -> None:
    """Two send_turn calls with the caller's idempotency key make one turn."""
    conv = parley.create_conversation(key=new_key()).id
    first = parley.send_turn(conv, "once", idempotency_key="Ev-1")
    again = parley.send_turn(conv, "once", idempotency_key="Ev-1")
    assert first.id == again.id
    parley.wait_for_reply(first.id, timeout_s=30)
    assert parley.get_conversation(conv).pending == 0


def test_conversation_stream_resumes_from_last_event_id(parley: ParleyClient) -> None:
    """stream_conversation from the start, left after the first events, then resumed with the last seq seen,
    gives every event once, in order."""
    conv = parley.create_conversation(key=new_key()).id
    turns = [parley.send_turn(conv, f"message {i}").id for i in range(2)]
    seen: list[int] = []
    with contextlib.closing(parley.stream_conversation(conv)) as first:
        for event in first:
            seen.append(event.seq)
            if len(seen) == 2:
                break
    for turn in turns:
        parley.wait_for_reply(turn, timeout_s=30)
    done = 0
    with contextlib.closing(parley.stream_conversation(conv, last_event_id=seen[-1])) as resumed:
        for event in resumed:
            seen.append(event.seq)
            done += event.type == "turn.completed"
            if done == 2:
                break
    assert seen == list(range(1, len(seen) + 1))


def test_cancel_a_queued_turn_and_not_a_finished_one(parley: ParleyClient) -> None:
    """cancel_turn on a turn queued behind a slow one cancels it (its stream ends with turn.cancelled);
    cancelling it again is a ConflictError with the envelope's type and param."""
    conv = parley.create_conversation(key=new_key()).id
    running = parley.send_turn(conv, "slow one", metadata=slow(1500)).id
    queued = parley.send_turn(conv, "cancel me").id
    assert parley.cancel_turn(queued).status.value == "cancelled"
    assert [e.type for e in parley.stream_turn(queued)][-1] == "turn.cancelled"
    with pytest.raises(ConflictError) as caught:
        parley.cancel_turn(queued)
    assert caught.value.status_code == 409 and caught.value.type == "not_cancellable"
    assert caught.value.param == "id"
    assert parley.wait_for_reply(running, timeout_s=30).status.value == "completed"


def test_error_answers_are_typed_with_status_type_param_and_request_id(parley: ParleyClient) -> None:
    """404 is NotFoundError, 422 InvalidRequestError (naming the field), a missing key AuthenticationError;
    each carries the server's x-request-id."""
    with pytest.raises(NotFoundError) as missing:
        parley.get_turn("turn_nope")
    assert (missing.value.status_code, missing.value.type, missing.value.param) == (404, "not_found", "id")
    assert (missing.value.request_id or "").startswith("req_")
    with pytest.raises(InvalidRequestError) as invalid:
        parley.create_conversation(metadata={"k": "v" * 600})
    assert invalid.value.status_code == 422 and invalid.value.param == "metadata"
    with ParleyClient(URL) as anonymous, pytest.raises(AuthenticationError) as unauthorized:
        anonymous.create_conversation()
    assert unauthorized.value.status_code == 401


def test_a_full_mailbox_is_retried_after_retry_after(parley: ParleyClient) -> None:
    """With the mailbox full (cap 2 behind a slow turn), a client without retries gets RateLimitError with
    Retry-After; the default client waits it out and the turn is accepted once the mailbox drains."""
    conv = parley.create_conversation(key=new_key()).id
    parley.send_turn(conv, "slow one", metadata=slow(2500))
    with ParleyClient(URL, api_key=KEY, max_retries=0) as impatient:
        with pytest.raises(RateLimitError) as caught:
            for i in range(5):
                impatient.send_turn(conv, f"fill {i}")
    assert caught.value.type == "mailbox_full" and caught.value.retry_after_s == 1.0
    started = time.monotonic()
    late = parley.send_turn(conv, "let me in")
    assert time.monotonic() - started >= 0.9  # it waited at least one Retry-After
    assert parley.wait_for_reply(late.id, timeout_s=30).status.value == "completed"


def test_async_client_has_the_same_calls() -> None:
    """AsyncParleyClient: create, update, send, stream, wait, items, cancel and delete, as the sync one."""

    async def scenario() -> None:
        async with AsyncParleyClient(URL, api_key=KEY) as parley:
            conv = (await parley.create_conversation(key=new_key())).id
            assert (await parley.update_conversation(conv, metadata={"a": "b"})).metadata == {"a": "b"}
            turn = await parley.send_turn(conv, "async hello", metadata=slow(800))
            queued = await parley.send_turn(conv, "async cancel me")
            assert (await parley.cancel_turn(queued.id)).status.value == "cancelled"
            events = [e async for e in parley.stream_turn(turn.id)]
            done = await parley.wait_for_reply(turn.id, timeout_s=30)
            assert events[-1].type == "turn.completed" and done.output_text == events[-1].output_text
            assert (await parley.get_turn(turn.id)).status.value == "completed"
            items = [item async for item in parley.iter_items(conv, page_size=1)]
            assert [item["role"] for item in items] == ["user", "assistant"]
            assert (await parley.list_items(conv, limit=5)).has_more is False
            assert (await parley.get_conversation(conv)).pending == 0
            assert (await parley.delete_conversation(conv)).deleted
            with pytest.raises(NotFoundError):
                await parley.get_conversation(conv)

    asyncio.run(scenario())
