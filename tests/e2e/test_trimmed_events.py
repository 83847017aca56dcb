"""A turn's event stream ends when the turn has ended, also when its events were trimmed from the
capped per-conversation stream (``PARLEY_STREAM_MAXLEN``): the API then ends it with a terminal event rebuilt
from the turn record."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest
import redis
from stack import workers

from parley.api.client import ParleyClient
from parley.worker.events.models import parse_event
from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "events.schema.json").read_text())
FLOOD_TURNS = 60
# Well under the server's 15 s ping: a stream that only pings fails the test instead of hanging it.
READ_TIMEOUT_S = 8.0


@pytest.fixture(name="settings")
def _small_stream(settings: Settings) -> Settings:
    # XADD MAXLEN ~ trims whole stream nodes (100 entries each), so a few hundred events are enough to drop
    # the first turns' events with a cap this small.
    return settings.model_copy(update={"stream_maxlen": 5})


def sse_events(api_server: str, turn_id: str, last_event_id: int | None = None
               ) -> list[tuple[str, dict[str, object]]]:
    """Every (SSE id, event) of the turn's stream, read until the server ends it."""
    headers = {"last-event-id": str(last_event_id)} if last_event_id is not None else {}
    got: list[tuple[str, dict[str, object]]] = []
    sse_id = ""
    with httpx.stream("GET", f"{api_server}/v1/turns/{turn_id}/events", headers=headers,
                      timeout=httpx.Timeout(10.0, read=READ_TIMEOUT_S)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("id:"):
                sse_id = line[3:].strip()
            elif line.startswith("data:"):
                got.append((sse_id, json.loads(line[5:])))
    return got


def test_streams_of_trimmed_turns_end_with_a_terminal_event_from_the_record(
        settings: Settings, api_server: str, emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """Once a completed, a failed and a cancelled turn's events are trimmed, each turn's SSE stream (from the
    start or from an old Last-Event-ID) sends one terminal event built from the turn record, valid against the
    event schema, with the id the real one had, and ends, instead of sending pings forever."""
    client = ParleyClient(api_server)
    conv = client.create_conversation(key="trimmed").id
    cancelled = client.send_turn(conv, "never mind").id  # no worker yet: still queued, so cancellable
    client.http.post(f"/v1/turns/{cancelled}/cancel").raise_for_status()
    with workers(settings, 1, concurrency=8):
        done = client.send_turn(conv, "remember me", metadata={"channel": "C1"}).id
        failed = client.send_turn(conv, "refuse me", metadata={"emulator_fault": "bad_request"}).id
        flood = [client.send_turn(conv, f"filler {i}").id for i in range(FLOOD_TURNS)]
        assert client.wait_for_reply(flood[-1], timeout_s=60).status.value == "completed"
    stored = [json.loads(f["data"]) for _, f in redis_client.xrange(Keys().events(conv))]
    assert not {e["turn_id"] for e in stored} & {cancelled, done, failed}, "the first turns' events are gone"
    last = stored[-1]["seq"]

    records = {turn: client.get_turn(turn) for turn in (done, failed, cancelled)}
    assert [r.status.value for r in records.values()] == ["completed", "failed", "cancelled"]
    for turn, record in records.items():
        for resume in (None, 3):
            events = sse_events(api_server, turn, resume)
            assert len(events) == 1, events
            sse_id, event = events[0]
            jsonschema.validate(event, SCHEMA)
            parsed = parse_event(json.dumps(event))
            assert parsed.id == f"{turn}.{record.status.value}" and parsed.turn_id == turn
            assert parsed.seq == int(sse_id) == last  # the stream position it was made at
            assert parsed.created_at == record.completed_at
    completed = parse_event(json.dumps(sse_events(api_server, done)[0][1]))
    assert completed.type == "turn.completed"
    assert completed.output_text == records[done].output_text and completed.output_text.startswith("Reply 1")
    assert completed.response_id == records[done].response_id and completed.usage == records[done].usage
    assert completed.metadata == {"channel": "C1"}
    failure = parse_event(json.dumps(sse_events(api_server, failed)[0][1]))
    assert failure.type == "turn.failed" and failure.error == records[failed].error


def test_a_resumed_stream_of_a_running_turn_past_trimmed_events_still_gets_the_real_end(
        settings: Settings, api_server: str, emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """A stream that resumes from a Last-Event-ID whose events were trimmed, on a turn that has not ended,
    follows on and ends with the turn's real terminal event (the gap makes the server check the record, and
    the turn is still running, so it keeps following)."""
    client = ParleyClient(api_server)
    conv = client.create_conversation(key="trimmed-live").id
    with workers(settings, 1, concurrency=8):
        flood = [client.send_turn(conv, f"filler {i}").id for i in range(FLOOD_TURNS)]
        client.wait_for_reply(flood[-1], timeout_s=60)
        first_seq = int(redis_client.xrange(Keys().events(conv), count=1)[0][0].split("-")[0])
        assert first_seq > 2, "seq 1 and 2 are trimmed"
        slow = client.send_turn(conv, "take your time", metadata={"emulator_fault": "latency=1500"}).id
        events = sse_events(api_server, slow, last_event_id=1)
    assert events[-1][1]["type"] == "turn.completed" and events[-1][1]["id"] == f"{slow}.completed"
    real = [json.loads(f["data"]) for _, f in redis_client.xrange(Keys().events(conv))]
    assert [e for _, e in events] == [e for e in real if e["turn_id"] == slow]
