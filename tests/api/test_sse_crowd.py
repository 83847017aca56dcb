"""Many SSE clients of a real uvicorn server share the API's one fan-out reader: Redis clients stay flat while
1,000 of them listen, each gets every event published after it connected, once and in order, and the hub
delivers again after its connection is killed. (About 7 s, so not marked slow.)"""

from __future__ import annotations

import asyncio
import json
import resource

import httpx
import pytest
import redis
from conftest import open_listeners, wait_until

from parley.api.fanout import CLIENT_NAME
from parley.worker.store.keys import Keys

LISTENERS = 1000
CONVERSATIONS = 10
EVENTS = 3
SLACK = 6
"""Redis clients the crowd may add: the hub's reader and the few pool connections its catch-up reads borrow
(at most ``CATCH_UP_SLOTS`` at once), whatever the number of listeners."""


def _stored(redis_client: redis.Redis, conv: str) -> list[tuple[int, str]]:
    return [(int(entry_id.split("-")[0]), json.loads(fields["data"])["turn_id"])
            for entry_id, fields in redis_client.xrange(Keys().events(conv))]


def _named(redis_client: redis.Redis) -> int:
    return sum(1 for c in redis_client.client_list() if c.get("name") == CLIENT_NAME)


def _kill_reader(redis_client: redis.Redis) -> None:
    for client in redis_client.client_list():
        if client.get("name") == CLIENT_NAME:
            redis_client.client_kill_filter(_id=client["id"])


def _enough_files(needed: int) -> None:
    """Both ends of every stream live in this process (the server runs on a thread): two descriptors each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_sse_crowd_shares_one_redis_connection_and_gets_every_event(
        api_server: str, redis_client: redis.Redis) -> None:
    """1,000 SSE clients over 10 conversations: while all of them listen, Redis has one fan-out
    connection and at most a handful more clients than before they came; every client gets the 3 events
    published to its conversation after it connected (the second after ``CLIENT KILL`` of the hub's
    connection), exactly as stored: none lost, none twice, in order; and each is let go once it leaves."""
    listeners = LISTENERS
    _enough_files(2 * listeners + 500)
    with httpx.Client(base_url=api_server, timeout=30) as http:
        convs = [http.post("/v1/conversations", json={}).json()["id"] for _ in range(CONVERSATIONS)]
        warm = http.post("/v1/conversations", json={}).json()["id"]
        # A turn and a long-poll first, so the API's pool, its broker connection and the hub's reader exist.
        turn = http.post(f"/v1/conversations/{warm}/turns", json={"input": "warm-up"}).json()["id"]
        http.get(f"/v1/turns/{turn}", params={"wait": 0.3})
    before_clients = len(redis_client.client_list())
    before = open_listeners(api_server)
    received: list[list[tuple[int, str]]] = [[] for _ in range(listeners)]
    peak: dict[str, int] = {}

    async def listen(http: httpx.AsyncClient, index: int, connected: list[int]) -> None:
        async with http.stream("GET", f"/v1/conversations/{convs[index % CONVERSATIONS]}/events") as response:
            assert response.status_code == 200
            connected[0] += 1
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    received[index].append((event["seq"], event["turn_id"]))
                    if len(received[index]) == EVENTS:
                        return

    async def publish(http: httpx.AsyncClient) -> None:
        for conv in convs:
            response = await http.post(f"/v1/conversations/{conv}/turns", json={"input": "hi"})
            assert response.status_code == 202

    async def everyone_has(count: int) -> None:
        await asyncio.to_thread(wait_until, lambda: all(len(got) >= count for got in received), timeout_s=60,
                                message=f"every listener to get {count} events")

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=listeners + 10, max_keepalive_connections=listeners + 10)
        async with httpx.AsyncClient(base_url=api_server, limits=limits, timeout=120) as crowd, \
                httpx.AsyncClient(base_url=api_server, timeout=30) as sender:
            connected = [0]
            tasks = [asyncio.create_task(listen(crowd, i, connected)) for i in range(listeners)]
            await asyncio.to_thread(wait_until, lambda: open_listeners(api_server) >= before + listeners,
                                    timeout_s=60, message=f"{listeners} listeners")
            await publish(sender)
            await everyone_has(1)  # all of them are in the hub now
            peak["clients"], peak["named"] = len(redis_client.client_list()), _named(redis_client)
            _kill_reader(redis_client)
            await publish(sender)
            await everyone_has(2)
            await publish(sender)
            done, pending = await asyncio.wait(tasks, timeout=60)
            assert not pending and connected[0] == listeners
            for task in done:
                task.result()

    asyncio.run(scenario())
    assert peak["named"] == 1, peak
    assert peak["clients"] <= before_clients + SLACK, (before_clients, peak)
    stored = {conv: _stored(redis_client, conv) for conv in convs}
    assert all(len(events) == EVENTS for events in stored.values())
    for index, got in enumerate(received):
        assert got == stored[convs[index % CONVERSATIONS]], (index, got)
    assert _named(redis_client) == 1  # the killed reader was replaced by one, not more
    wait_until(lambda: open_listeners(api_server) == before, timeout_s=10, message="the listeners to leave")
