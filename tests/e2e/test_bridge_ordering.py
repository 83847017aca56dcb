"""Ordering through the Slack bridge: many threads, several quick messages each, two real worker processes
and one relay; every thread's replies arrive in the order its messages were posted, one per message."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from conftest import wait_until
from slack_fake import TEAM_ID, FakeSlack, fake_slack
from slack_support import (
    KEYS,
    conversation_for,
    envelope,
    mention,
    post_event,
    queued_turns,
    relay_in_process,
    slack_settings,
)
from stack import workers

from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings

THREADS, PER_THREAD = 20, 5


def root_of(thread: int) -> str:
    return f"17123456{thread:02d}.000100"


def post_thread(url: str, thread: int) -> None:
    """The thread's messages one after the other, as quickly as the API answers: a mention starts it, the
    rest are replies in it (followed, since the bot was mentioned)."""
    root = root_of(thread)
    assert post_event(url, envelope(mention(f"question {thread}.0", ts=root),
                                    event_id=f"EvO{thread}-0")).status_code == 200
    for n in range(1, PER_THREAD):
        more = {"type": "message", "channel": "C2", "channel_type": "channel", "user": "U7",
                "text": f"question {thread}.{n}", "ts": f"17123456{thread:02d}.00020{n}", "thread_ts": root,
                "team": TEAM_ID}
        assert post_event(url, envelope(more, event_id=f"EvO{thread}-{n}")).status_code == 200


@pytest.fixture(name="busy_bridge")
def _busy_bridge(settings: Settings, emulator: EmulatorServer) -> Iterator[tuple[str, FakeSlack, Settings]]:
    """Fake Slack, the API with the bridge, two workers; the emulator answers briefly, in a few deltas."""
    emulator.config.reply_words, emulator.config.delta_interval_ms, emulator.config.chunk_chars = 12, 5, 12
    with fake_slack() as (fake, api_url):
        bridged = slack_settings(settings, api_url, delta_interval_ms=50)
        with BackgroundServer(create_app(bridged)) as server, workers(bridged, 2):
            yield server.url, fake, bridged


def replies_of(fake: FakeSlack, root: str) -> list[str]:
    """The thread's messages in the order they were started (the fake's ts count up), each stopped once."""
    with fake.lock:
        mine = [(ts, m) for ts, m in fake.messages.items() if m.thread_ts == root]
        assert all(m.stops == 1 for _, m in mine)
        return [m.text for _, m in sorted(mine)]


def test_every_threads_replies_arrive_in_posting_order(busy_bridge: tuple[str, FakeSlack, Settings],
                                                       redis_client: redis.Redis) -> None:
    """20 threads × 5 messages posted concurrently across threads: each thread is its own conversation of 5
    turns, and its replies are 5 stopped streams whose texts are the turns' output_text in posting order
    (none missing, none twice)."""
    url, fake, settings = busy_bridge
    with relay_in_process(settings):
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda t: post_thread(url, t), range(THREADS)))
        convs = {t: conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:{root_of(t)}")
                 for t in range(THREADS)}
        assert None not in convs.values() and len(set(convs.values())) == THREADS
        turns = {t: [q["turn_id"] for q in queued_turns(redis_client, str(conv))]
                 for t, conv in convs.items()}
        assert all(len(ids) == PER_THREAD for ids in turns.values())

        def all_done() -> bool:
            return all(redis_client.hget(KEYS.bridge_posted(str(convs[t]), "slack", turn), "done") == "1"
                       for t, ids in turns.items() for turn in ids)

        wait_until(all_done, timeout_s=60, message="every reply done")
    assert len(fake.named("chat.stopStream")) == THREADS * PER_THREAD
    for t, ids in turns.items():
        outputs = [redis_client.hget(KEYS.turn(str(convs[t]), turn), "output_text") for turn in ids]
        assert all(outputs) and len(set(outputs)) == PER_THREAD
        assert replies_of(fake, root_of(t)) == outputs, f"thread {t}"
