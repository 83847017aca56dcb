"""The emulator behaves like OpenAI's Conversations and Responses APIs, as seen through the real SDK."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import openai
import pytest
from openapi_spec import SSE_EVENT_SCHEMAS, validate

from parley.worker.local.emulator import EmulatorServer


@pytest.fixture(name="client")
def _client(emulator: EmulatorServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=emulator.base_url, api_key="test", max_retries=0) as client:
        yield client


class TestConversations:
    def test_crud_round_trip(self, client: openai.OpenAI) -> None:
        """Create, retrieve, update and delete return OpenAI's objects, valid against the spec."""
        raw = client.conversations.with_raw_response.create(metadata={"topic": "demo"})
        validate("ConversationResource", raw.http_response.json())
        conv = raw.parse()
        assert conv.id.startswith("conv_") and conv.metadata == {"topic": "demo"}
        assert client.conversations.retrieve(conv.id).id == conv.id
        updated = client.conversations.with_raw_response.update(conv.id, metadata={"topic": "new"})
        validate("ConversationResource", updated.http_response.json())
        assert updated.parse().metadata == {"topic": "new"}
        deleted = client.conversations.with_raw_response.delete(conv.id)
        validate("DeletedConversationResource", deleted.http_response.json())
        assert deleted.parse().deleted is True
        with pytest.raises(openai.NotFoundError):
            client.conversations.retrieve(conv.id)

    def test_items_paginate_in_both_orders(self, client: openai.OpenAI) -> None:
        """Items come newest first by default; after/limit/has_more/first_id/last_id page through them."""
        conv = client.conversations.create()
        created = client.conversations.items.with_raw_response.create(
            conv.id, items=[{"role": "user", "content": f"m{i}"} for i in range(5)])
        validate("ConversationItemList", created.http_response.json())
        ids = [item.id for item in created.parse().data]
        first = client.conversations.items.with_raw_response.list(conv.id, limit=2)
        validate("ConversationItemList", first.http_response.json())
        page = first.parse()
        assert [i.id for i in page.data] == ids[::-1][:2]
        assert page.has_more is True and page.last_id == ids[3] and page.first_id == ids[4]
        assert [i.id for i in client.conversations.items.list(conv.id, limit=2, order="asc")] == ids
        tail = client.conversations.items.list(conv.id, limit=2, order="asc", after=ids[2])
        assert [i.id for i in tail.data] == ids[3:] and tail.has_more is False
        item = client.conversations.items.with_raw_response.retrieve(ids[0], conversation_id=conv.id)
        validate("ConversationItem", item.http_response.json())
        after_delete = client.conversations.items.with_raw_response.delete(ids[0], conversation_id=conv.id)
        validate("ConversationResource", after_delete.http_response.json())
        assert [i.id for i in client.conversations.items.list(conv.id, order="asc")] == ids[1:]


class TestResponses:
    def test_create_appends_input_then_output(self, client: openai.OpenAI) -> None:
        """Each response appends [input..., output...]; the next call sees them (the reply names its turn)."""
        conv = client.conversations.create()
        raw = client.responses.with_raw_response.create(conversation=conv.id, input="hello", model="m")
        validate("Response", raw.http_response.json())
        first = raw.parse()
        assert first.output_text.startswith("Reply 1 to: hello") and first.usage is not None
        assert first.conversation is not None and first.conversation.id == conv.id
        second = client.responses.create(conversation={"id": conv.id}, input="again", model="m")
        assert second.output_text.startswith("Reply 2 to: again")
        items = list(client.conversations.items.list(conv.id, order="asc"))
        assert [(i.role, i.content[0].text) for i in items] == [
            ("user", "hello"), ("assistant", first.output_text), ("user", "again"),
            ("assistant", second.output_text)]
        assert items[1].id == first.output[0].id
        client.conversations.items.delete(items[0].id, conversation_id=conv.id)
        third = client.responses.create(conversation=conv.id, input="once more", model="m")
        assert third.output_text.startswith("Reply 2 to: once more")  # one user message was deleted

    def test_stream_matches_non_streamed(self, client: openai.OpenAI, emulator: EmulatorServer) -> None:
        """The SSE sequence is the one the SDK expects, each event is spec-valid, deltas join to the text, and
        the final response equals a non-streamed one on an identical conversation."""
        emulator.config.chunk_chars = 5
        conv_a, conv_b = client.conversations.create(), client.conversations.create()
        plain = client.responses.create(conversation=conv_a.id, input="stream me", model="m")
        with client.responses.with_streaming_response.create(
                conversation=conv_b.id, input="stream me", model="m", stream=True) as raw:
            lines = [line for line in raw.iter_lines() if line.startswith("data: ")]
        events = [json.loads(line[6:]) for line in lines]
        for event in events:
            validate(SSE_EVENT_SCHEMAS[event["type"]], event)
        types = [e["type"] for e in events]
        assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                             "response.content_part.added"]
        assert types[-4:] == ["response.output_text.done", "response.content_part.done",
                              "response.output_item.done", "response.completed"]
        deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
        assert len(deltas) > 3 and "".join(deltas) == plain.output_text
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        with client.responses.stream(conversation=conv_a.id, input="helper", model="m") as stream:
            final = stream.get_final_response()
        assert final.output_text.startswith("Reply 2 to: helper")
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == plain.output_text
        assert events[-1]["response"]["usage"] == plain.usage.model_dump(exclude_none=True)

    def test_background_retrieve_cancel_and_resume(self, client: openai.OpenAI,
                                                   emulator: EmulatorServer) -> None:
        """A background response is queued, pollable, resumable from a sequence number, and cancellable."""
        conv = client.conversations.create()
        queued = client.responses.create(conversation=conv.id, input="bg", background=True, model="m")
        assert queued.status in ("queued", "in_progress")
        deadline = time.monotonic() + 5
        while (done := client.responses.retrieve(queued.id)).status not in ("completed", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert done.status == "completed" and done.output_text.startswith("Reply 1 to: bg")
        validate("Response", client.responses.with_raw_response.retrieve(queued.id).http_response.json())
        resumed = list(client.responses.retrieve(queued.id, stream=True, starting_after=2))
        assert resumed[0].sequence_number == 3 and resumed[-1].type == "response.completed"

        emulator.config.latency_ms = (2000, 2000)
        slow = client.responses.create(conversation=conv.id, input="slow", background=True, model="m")
        raw_cancel = client.responses.with_raw_response.cancel(slow.id)
        validate("Response", raw_cancel.http_response.json())
        cancelled = raw_cancel.parse()
        assert cancelled.status == "cancelled"
        assert client.responses.cancel(slow.id).status == "cancelled"  # idempotent
        # The cancelled response appended nothing and released the conversation.
        assert len(emulator.store.snapshot_items(conv.id)) == 2
        client.responses.create(conversation=conv.id, input="after", model="m", background=True)

    def test_concurrent_request_is_conversation_locked(self, client: openai.OpenAI,
                                                       emulator: EmulatorServer) -> None:
        """A second request while a response is in progress gets 400 conversation_locked, which the SDK
        does not retry; the overlap detector records it."""
        emulator.config.latency_ms = (500, 500)
        conv = client.conversations.create()
        first = threading.Thread(target=client.responses.create,
                                 kwargs={"conversation": conv.id, "input": "one", "model": "m"})
        first.start()
        time.sleep(0.15)
        retrying = openai.OpenAI(base_url=emulator.base_url, api_key="t", max_retries=2)
        with pytest.raises(openai.BadRequestError) as info:
            retrying.responses.create(conversation=conv.id, input="two", model="m")
        first.join()
        assert info.value.code == "conversation_locked" and info.value.param == "conversation"
        validate("ErrorResponse", info.value.body and {"error": info.value.body})
        assert emulator.store.overlap_count() == 1
        assert len([r for r in emulator.store.snapshot_requests() if r.input_texts == ["two"]]) == 1

    def test_previous_response_id_with_conversation_is_rejected(self, client: openai.OpenAI) -> None:
        conv = client.conversations.create()
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(conversation=conv.id, previous_response_id="resp_1", input="x", model="m")
        assert info.value.param == "previous_response_id"


class TestFaults:
    def test_429_with_retry_after_is_retried_by_the_sdk(self, emulator: EmulatorServer) -> None:
        emulator.config.retry_after_s = 0.1
        client = openai.OpenAI(base_url=emulator.base_url, api_key="t", max_retries=2)
        conv = client.conversations.create()
        started = time.monotonic()
        reply = client.responses.create(conversation=conv.id, input="hi", model="m",
                                        extra_headers={"x-emulator-fault": "429;times=1"})
        assert reply.output_text.startswith("Reply 1")
        assert time.monotonic() - started >= 0.1
        statuses = [r.status for r in emulator.store.snapshot_requests()]
        assert statuses == ["fault:429", "completed"]

    def test_persistent_500_surfaces(self, emulator: EmulatorServer) -> None:
        client = openai.OpenAI(base_url=emulator.base_url, api_key="t", max_retries=1)
        conv = client.conversations.create()
        with pytest.raises(openai.InternalServerError) as info:
            client.responses.create(conversation=conv.id, input="hi", model="m",
                                    extra_headers={"x-emulator-fault": "500"})
        validate("ErrorResponse", {"error": info.value.body})
        assert len(emulator.store.snapshot_requests()) == 2

    def test_dropped_stream_still_completes_server_side(self, client: openai.OpenAI,
                                                        emulator: EmulatorServer) -> None:
        """The connection drops mid-stream (APIConnectionError); by default the response finishes upstream."""
        conv = client.conversations.create()
        stream = client.responses.create(conversation=conv.id, input="drop", model="m", stream=True,
                                         metadata={"emulator_fault": "drop"})
        seen = []
        with pytest.raises(openai.APIConnectionError):
            for event in stream:
                seen.append(event.type)
        assert "response.created" in seen and "response.completed" not in seen
        deadline = time.monotonic() + 5
        while len(emulator.store.snapshot_items(conv.id)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def test_hang_times_out(self, emulator: EmulatorServer) -> None:
        emulator.config.hang_s = 3
        client = openai.OpenAI(base_url=emulator.base_url, api_key="t", max_retries=0, timeout=0.3)
        conv = client.conversations.create()
        with pytest.raises(openai.APITimeoutError):
            client.responses.create(conversation=conv.id, input="x", model="m",
                                    extra_headers={"x-emulator-fault": "hang"})

    def test_failed_response_event(self, client: openai.OpenAI) -> None:
        conv = client.conversations.create()
        events = list(client.responses.create(conversation=conv.id, input="x", model="m", stream=True,
                                              extra_headers={"x-emulator-fault": "fail"}))
        assert events[-1].type == "response.failed"
        assert events[-1].response.error is not None
        assert client.conversations.items.list(conv.id).data == []

    def test_random_faults_are_deterministic_per_seed(self, emulator: EmulatorServer) -> None:
        emulator.config.p_429 = 0.5
        planner = emulator.emulator.faults

        def draw() -> list[str | None]:
            planner.reseed(42)
            return [planner.decide(None, "k", allow_stream_faults=True).kind for _ in range(50)]

        first = draw()
        assert first == draw() and 10 < first.count("429") < 40
