"""Streaming replies and durable events (issue 5): deltas, resumable SSE, many SSE clients, a stuck pub/sub
subscriber, the replies consumer group, long-poll, the client and `parley chat`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
import redis
from conftest import open_listeners, settings_env, wait_until
from stack import workers

from parley.api.client import AsyncParleyClient, ParleyClient
from parley.api.fanout import CLIENT_NAME as FANOUT_CLIENT_NAME
from parley.worker.events.replies import ReplyConsumer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "events.schema.json").read_text())


@pytest.fixture(name="client")
def _client(api_server: str) -> Iterator[ParleyClient]:
    with ParleyClient(api_server) as client:
        yield client


@pytest.fixture(name="chatty")
def _chatty(emulator: EmulatorServer) -> EmulatorServer:
    """Long replies in many small, paced deltas."""
    emulator.config.chunk_chars = 6
    emulator.config.reply_words = 60
    emulator.config.delta_interval_ms = 10
    return emulator


def all_events(redis_client: redis.Redis, conv: str) -> list[dict[str, object]]:
    return [json.loads(f["data"]) for _, f in redis_client.xrange(Keys().events(conv))]


def test_deltas_join_to_the_reply_and_every_event_matches_the_schema(
        settings: Settings, client: ParleyClient, chatty: EmulatorServer, redis_client: redis.Redis) -> None:
    conv = client.create_conversation(key="deltas").id
    with workers(settings, 1, concurrency=8):
        turns = [client.send_turn(conv, f"message {i}") for i in range(3)]
        streamed = {turn.id: list(client.stream_turn(turn.id)) for turn in turns}
    for turn in turns:
        events = streamed[turn.id]
        assert events[0].type in ("turn.queued", "turn.started") and events[-1].type == "turn.completed"
        deltas = [e.delta for e in events if e.type == "response.delta"]
        assert len(deltas) > 3
        assert "".join(deltas) == events[-1].output_text == client.get_turn(turn.id).output_text
    stored = all_events(redis_client, conv)
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
    for event in stored:
        jsonschema.validate(event, SCHEMA)
    # Coalescing: far fewer delta events than upstream deltas (60 words in 6-char chunks, 10 ms apart).
    per_turn = sum(1 for e in stored if e["type"] == "response.delta") / 3
    assert per_turn < 40


def test_reconnect_with_last_event_id_gets_every_missed_event_once(
        settings: Settings, client: ParleyClient, chatty: EmulatorServer, redis_client: redis.Redis) -> None:
    conv = client.create_conversation(key="resume").id
    seen: list[int] = []
    with workers(settings, 1, concurrency=8):
        turn = client.send_turn(conv, "long reply please")
        with contextlib.closing(client.stream_conversation(conv)) as first:
            for event in first:
                seen.append(event.seq)
                if event.type == "response.delta":
                    break  # disconnect mid-reply
        client.wait_for_reply(turn.id, timeout_s=20)
        with contextlib.closing(client.stream_conversation(conv, last_event_id=seen[-1])) as resumed:
            for event in resumed:
                seen.append(event.seq)
                if event.type == "turn.completed":
                    break
    stored = [e["seq"] for e in all_events(redis_client, conv)]
    assert seen == stored


def _reader_connections(redis_client: redis.Redis) -> int:
    """Redis connections of the API's fan-out hub (it names its one). Counting every client instead was flaky:
    the worker's and the API's pools grow by a connection or two on their own as turns run."""
    return sum(1 for client in redis_client.client_list() if client.get("name") == FANOUT_CLIENT_NAME)


def test_200_sse_clients_get_every_event_over_one_redis_connection(
        settings: Settings, api_server: str, emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """200 SSE listeners of one conversation each get every stored event of four real turns (deltas and all)
    in order, all through the API's one fan-out reader connection, and each is let go once it leaves."""
    warm = ParleyClient(api_server)
    conv = warm.create_conversation(key="crowd").id
    with workers(settings, 1, concurrency=8):
        warm.wait_for_reply(warm.send_turn(conv, "warm-up").id, timeout_s=20)
        before = open_listeners(api_server)

        progress: dict[int, list[int]] = {}
        peak = [0]

        async def listen(http: httpx.AsyncClient, ready: asyncio.Event, count: list[int]) -> list[int]:
            seqs: list[int] = []
            progress[id(seqs)] = seqs
            completed = 0
            async with http.stream("GET", f"/v1/conversations/{conv}/events") as response:
                count[0] += 1
                if count[0] == 200:
                    ready.set()
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        seqs.append(event["seq"])
                        completed += event["type"] == "turn.completed"
                        if completed == 4:  # the warm-up turn and the three sent below
                            break
            return seqs

        async def scenario() -> list[list[int]]:
            limits = httpx.Limits(max_connections=250)
            async with httpx.AsyncClient(base_url=api_server, limits=limits, timeout=60) as http:
                ready, count = asyncio.Event(), [0]
                tasks = [asyncio.create_task(listen(http, ready, count)) for _ in range(200)]
                await asyncio.wait_for(ready.wait(), timeout=30)
                # Each stream subscribes once its body starts, just after its headers.
                await asyncio.to_thread(wait_until, lambda: open_listeners(api_server) >= before + 200,
                                        timeout_s=10, message="200 listeners")
                await asyncio.to_thread(wait_until, lambda: _reader_connections(redis_client) == 1,
                                        timeout_s=10, message="one reader connection for 200 listeners")
                sender = AsyncParleyClient(http=http)
                for i in range(3):
                    await sender.send_turn(conv, f"to everyone {i}")
                done, pending = await asyncio.wait(tasks, timeout=60)
                peak[0] = _reader_connections(redis_client)
                stored = [e["seq"] for e in all_events(redis_client, conv)]
                errors = [repr(t.exception()) for t in done if t.exception() is not None]
                assert not pending and not errors, (
                    f"{len(pending)} listeners unfinished, {len(errors)} failed ({errors[:3]}); stored "
                    f"{len(stored)} events; got {sorted(len(p) for p in progress.values())[:5]}")
                return [task.result() for task in tasks]

        results = asyncio.run(scenario())
        stored = [e["seq"] for e in all_events(redis_client, conv)]
        assert all(seqs == stored for seqs in results)
        assert all(len(seqs) > 10 for seqs in results)
        assert peak[0] == 1  # still one reader connection once all events went out...
        wait_until(lambda: open_listeners(api_server) == before, timeout_s=10,
                   message="every listener to be let go")  # ...and each let go once it left


def test_stuck_pubsub_subscriber_does_not_slow_workers(settings: Settings, client: ParleyClient,
                                                       chatty: EmulatorServer, redis_url: str) -> None:
    """A subscriber that never reads fills its own output buffer; publishing never waits for it."""
    convs = [client.create_conversation(key=f"stuck-{i}").id for i in range(40)]

    def run_batch(tag: str) -> float:
        started = time.monotonic()
        turns = [client.send_turn(conv, f"{tag} {i}").id for i, conv in enumerate(convs)]
        for turn in turns:
            assert client.wait_for_reply(turn, timeout_s=60).status.value == "completed"
        return time.monotonic() - started

    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    with workers(settings, 1, concurrency=50):
        run_batch("warm-up")
        baseline = run_batch("baseline")
        stuck = socket.create_connection((host, int(port)))
        stuck.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$" + str(len(Keys().events("*"))).encode() + b"\r\n"
                      + Keys().events("*").encode() + b"\r\n")
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            with_stuck = run_batch("stuck")
        finally:
            stuck.close()
    assert with_stuck < 2 * baseline + 1.0, f"baseline {baseline:.2f}s, with a stuck subscriber {with_stuck:.2f}s"


def test_consumer_group_redelivers_a_dead_consumers_replies(settings: Settings, client: ParleyClient,
                                                            emulator: EmulatorServer,
                                                            redis_client: redis.Redis) -> None:
    conv = client.create_conversation(key="group").id
    with workers(settings, 1, concurrency=8):
        turns = [client.send_turn(conv, f"q{i}").id for i in range(6)]
        for turn in turns:
            client.wait_for_reply(turn, timeout_s=20)
    # The group is made after the replies: start="0" reads them (a new group's default is the newest entry).
    doomed = ReplyConsumer(redis_client, group="bot", name="doomed", min_idle_ms=300, start="0")
    taken = doomed.read(count=4, block_ms=100)
    assert len(taken) == 4  # read, never acked: the consumer "dies" here
    survivor = ReplyConsumer(redis_client, group="bot", name="survivor", min_idle_ms=300, start="0")
    handled: list[str] = []
    time.sleep(0.4)
    for _ in range(5):
        for delivery in survivor.read(count=10, block_ms=100):
            handled.append(delivery.event.turn_id)
            survivor.ack(delivery)
    assert sorted(handled) == sorted(turns)
    assert len(handled) == len(set(handled))
    time.sleep(0.4)
    assert survivor.read(block_ms=100) == [] and doomed.read(block_ms=100) == []  # acked: never again
    assert redis_client.xpending(Keys().replies, "bot")["pending"] == 0


def test_reaper_relays_replies_a_crash_left_in_the_outbox(settings: Settings, redis_client: redis.Redis) -> None:
    from parley.worker.run.reaper import reap
    from parley.worker.store.mailbox import Mailbox

    keys = Keys()
    payload = json.dumps({"id": "t.completed", "type": "turn.completed", "conversation_id": "conv_x",
                          "turn_id": "t", "seq": 3, "created_at": 1.0, "output_text": "hi"})
    redis_client.rpush(keys.outbox("conv_x"), payload)
    redis_client.zadd(keys.active, {"conv_x": time.time() * 1000})
    reap(Mailbox(redis_client, settings), lambda conv: None)
    assert [f["data"] for _, f in redis_client.xrange(keys.replies)] == [payload]
    assert redis_client.llen(keys.outbox("conv_x")) == 0


def test_long_poll_returns_when_the_turn_ends(settings: Settings, client: ParleyClient,
                                              emulator: EmulatorServer) -> None:
    conv = client.create_conversation(key="poll").id
    with workers(settings, 1, concurrency=8):
        turn = client.send_turn(conv, "wait for me", metadata={"emulator_fault": "latency=800"})
        started = time.monotonic()
        done = client.get_turn(turn.id, wait_s=20)
        elapsed = time.monotonic() - started
    assert done.status.value == "completed" and elapsed < 5
    assert client.get_turn(turn.id, wait_s=5).status.value == "completed"  # already over: at once


@pytest.mark.parametrize("value", ["abc", "-1", "1_0", "+10", "18446744073709551616", "9223372036854775808",
                                   "\u0661"])
def test_bad_last_event_id_is_400(api_server: str, client: ParleyClient, value: str) -> None:
    """Anything but a seq's digits (within 64 bits) is a 400 before streaming starts: "1_0" was read as 10, and
    a number past 2^64 gave a 200 and then an aborted stream."""
    conv = client.create_conversation(key="bad-id").id
    response = httpx.get(f"{api_server}/v1/conversations/{conv}/events",
                         headers={"last-event-id": value.encode()})
    assert response.status_code == 400 and response.json()["error"]["param"] == "Last-Event-ID"
    query = httpx.get(f"{api_server}/v1/conversations/{conv}/events", params={"after": value})
    assert query.status_code in (400, 422) and query.json()["error"]["param"] == "after"
    assert httpx.get(f"{api_server}/v1/turns/turn_nope/events").status_code == 404
    unknown = f"turn_{'0' * 16}_{conv}"  # well-formed: a malformed id is 404 before the query is read
    assert httpx.get(f"{api_server}/v1/turns/{unknown}", params={"wait": 500}).status_code == 422


def test_parley_chat_streams_a_reply(settings: Settings, api_server: str, chatty: EmulatorServer) -> None:
    with workers(settings, 1, concurrency=8):
        chat = subprocess.run([sys.executable, "-m", "parley", "chat", "--url", api_server, "--conversation",
                               "terminal"], input="hello there\nsecond line\n", capture_output=True, text=True,
                              timeout=60, env={**settings_env(settings), "PATH": "/usr/bin:/bin"})
    assert chat.returncode == 0, chat.stderr
    assert "bot> Reply 1 to: hello there" in chat.stdout
    assert "bot> Reply 2 to: second line" in chat.stdout



def test_example_reply_consumer_runs(redis_url: str, redis_client: redis.Redis) -> None:
    """The README's runnable consumer recipe prints a reply put on the replies stream, once."""
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "reply_consumer.py"
    payload = json.dumps({"id": "t1.completed", "type": "turn.completed", "conversation_id": "c", "turn_id": "t1",
                          "seq": 2, "created_at": 1.0, "output_text": "hi there", "metadata": {"ch": "C1"}})
    redis_client.xadd(Keys().replies, {"data": payload})
    redis_client.xadd(Keys().replies, {"data": payload})  # a repeated delivery is handled once
    proc = subprocess.Popen([sys.executable, str(example), "--redis-url", redis_url, "--start", "0"],
                            stdout=subprocess.PIPE,
                            text=True, env={"PYTHONPATH": str(example.parents[2]), "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "reply to {'ch': 'C1'}: hi there"
        wait_until(lambda: redis_client.xpending(Keys().replies, "my-bot")["pending"] == 0, timeout_s=5)
    finally:
        proc.kill()
        proc.wait()
    assert redis_client.xinfo_groups(Keys().replies)[0]["entries-read"] == 2


def test_async_client_round_trip(settings: Settings, api_server: str, chatty: EmulatorServer) -> None:
    async def scenario() -> tuple[str, str, int]:
        async with AsyncParleyClient(api_server) as parley:
            conv = await parley.create_conversation(key="async")
            turn = await parley.send_turn(conv.id, "async hello")
            deltas = [e.delta async for e in parley.stream_turn(turn.id) if e.type == "response.delta"]
            done = await parley.wait_for_reply(turn.id, timeout_s=20)
            state = await parley.get_conversation(conv.id)
            return "".join(deltas), done.output_text or "", state.pending

    with workers(settings, 1, concurrency=4):
        joined, output, pending = asyncio.run(scenario())
    assert joined == output and output.startswith("Reply 1 to: async hello") and pending == 0
