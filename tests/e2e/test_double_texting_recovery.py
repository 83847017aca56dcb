"""Double texting across crashes: a worker SIGKILLed in the middle of a merged request and at each step of an
interrupt; another worker finishes, every merged input is in the conversation exactly once and every turn has
exactly one terminal event. Also the black-box ordering check with ``merge`` as the server's default."""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from conftest import wait_until
from stack import start_beat, start_worker, wait_ready, workers
from texting_support import (
    MESSAGES,
    conversation,
    events,
    ids,
    one_terminal_event_each,
    post,
    post_messages,
    requests_of,
    settle,
    turn,
)

from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.processes import stop
from parley.worker.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(name="http")
def _http(api_server: str, api_http: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    with api_http(api_server) as client:
        yield client


def user_texts(emulator: EmulatorServer, conv: str) -> list[str]:
    return ["".join(p["text"] for p in i["content"]) for i in emulator.store.snapshot_items(conv)
            if i.get("role") == "user"]


@pytest.mark.parametrize("point", ["claimed", "response_created", "upstream_done", "finished"])
def test_sigkill_in_a_merged_request(point: str, settings: Settings, http: httpx.Client,
                                     emulator: EmulatorServer, redis_client: redis.Redis) -> None:
    """Five messages merged into one request, its worker SIGKILLed at ``point``: after recovery the five
    inputs are in the conversation once each, in order, with one answer, and every turn has one terminal
    event (four turn.merged, one turn.completed)."""
    conv = conversation(http, double_texting="merge", debounce_ms=300)
    # Posted before any worker runs: the five wait together however long the posts take (on a loaded CI
    # machine they have taken more than the debounce), so the request that crashes is always the merged one.
    turns = ids(post_messages(http, conv))
    doomed = start_worker(settings, "doomed", concurrency=8, extra_env={"PARLEY_FAULTPOINT": point})
    try:  # no readiness ping: the worker takes the waiting turns at once and dies at the point
        doomed.wait(timeout=30)
        assert doomed.returncode == -signal.SIGKILL
        with workers(settings, 1, concurrency=8), start_beat(settings):
            records = settle(http, turns, timeout_s=40)
    finally:
        stop(doomed)
    assert [r["status"] for r in records] == ["merged"] * 4 + ["completed"]
    assert user_texts(emulator, conv) == MESSAGES
    assert [i["role"] for i in emulator.store.snapshot_items(conv)] == ["user"] * 5 + ["assistant"]
    ended = one_terminal_event_each(redis_client, conv, turns)
    assert [ended[t]["type"] for t in turns] == ["turn.merged"] * 4 + ["turn.completed"]


@pytest.mark.parametrize("point", ["interrupt_stopped", "interrupt_rolled_back"])
def test_sigkill_in_an_interrupt(point: str, settings: Settings, http: httpx.Client, emulator: EmulatorServer,
                                 redis_client: redis.Redis) -> None:
    """A slow reply interrupted by a newer message, its worker SIGKILLed at each step of the interrupt (the
    stream stopped; the items taken back): another worker redoes the rest; no partial assistant message is
    left, both inputs are answered once, each turn has one terminal event, and the next turn completes."""
    emulator.config.delta_interval_ms = 20
    conv = conversation(http, double_texting="interrupt")
    doomed = start_worker(settings, "doomed", concurrency=8, extra_env={"PARLEY_FAULTPOINT": point})
    try:
        wait_ready(settings, ["doomed"])
        slow = post(http, conv, "tell me a long story",
                    metadata={"emulator_fault": "latency=2000;ttft=100"}).json()["id"]
        wait_until(lambda: any(e["type"] == "response.delta" for e in events(redis_client, conv)),
                   timeout_s=10, message="the first reply writing")
        newer = post(http, conv, "actually, make it short").json()["id"]
        doomed.wait(timeout=30)
        assert doomed.returncode == -signal.SIGKILL
        with workers(settings, 1, concurrency=8), start_beat(settings):
            records = settle(http, [slow, newer], timeout_s=40)
            after = post(http, conv, "and then?").json()["id"]
            settle(http, [after])
    finally:
        stop(doomed)
    assert [r["status"] for r in records] == ["interrupted", "completed"]
    assert turn(http, after)["status"] == "completed"
    assert user_texts(emulator, conv) == ["tell me a long story", "actually, make it short", "and then?"]
    assert [i["role"] for i in emulator.store.snapshot_items(conv)] == ["user", "user", "assistant", "user",
                                                                        "assistant"]
    ended = one_terminal_event_each(redis_client, conv, [slow, newer, after])
    assert ended[slow]["type"] == "turn.interrupted" and ended[slow]["answered_by"] == newer


def test_ordering_with_merge_as_the_server_default(settings: Settings, emulator: EmulatorServer,
                                                   redis_client: redis.Redis) -> None:
    """The black-box ordering check with ``PARLEY_DOUBLE_TEXTING=merge`` (and a 300 ms debounce): 40
    conversations x 8 turns posted
    interleaved onto two workers; every accepted input reaches upstream exactly once and in acceptance order,
    no two requests of a conversation overlap, and every turn has one terminal event."""
    # A debounce longer than the gap between one conversation's posts: its messages always merge, so the check
    # is about merged requests whatever the machine's speed.
    merging = settings.model_copy(update={"double_texting": "merge", "debounce_ms": 300})
    emulator.config.latency_ms = (0, 50)
    accepted: dict[str, list[str]] = defaultdict(list)
    texts: dict[str, list[str]] = defaultdict(list)
    with BackgroundServer(create_app(merging)) as api, httpx.Client(base_url=api.url, timeout=30) as http:
        convs = [conversation(http) for _ in range(40)]

        def post_all(group: list[str]) -> None:
            for n in range(8):
                for conv in group:
                    text = f"{conv[-6:]} t{n}"
                    response = post(http, conv, text)
                    assert response.status_code == 202, response.text
                    accepted[conv].append(response.json()["id"])
                    texts[conv].append(text)

        with workers(merging, 2, concurrency=20):
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(post_all, [convs[i::4] for i in range(4)]))
            for conv in convs:
                settle(http, accepted[conv], timeout_s=60)
    assert emulator.store.overlap_count() == 0
    merged = 0
    for conv in convs:
        sent = [text for request in requests_of(emulator, conv) for text in request.input_texts]
        assert sent == texts[conv]
        assert user_texts(emulator, conv) == texts[conv]
        ended = one_terminal_event_each(redis_client, conv, accepted[conv])
        merged += sum(1 for e in ended.values() if e["type"] == "turn.merged")
    assert merged > 0, "with turns arriving while others run, some must have been merged"
