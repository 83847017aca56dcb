"""The Slack bridge end to end: a signed app_mention into the real API, a real worker process answering it
from the emulator, and the relay (``parley slack-relay``, in this process or as its own) writing the reply
into the thread of the fake Slack Web API."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import redis
from conftest import settings_env, wait_until
from slack_fake import BOT_USER_ID, TEAM_ID, FakeSlack, fake_slack
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

from parley.api.bridges.slack.render import THINKING
from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.processes import spawn, stop
from parley.worker.settings import Settings

ROOT = "1712345678.000100"


@pytest.fixture(name="bridge")
def _bridge(settings: Settings, emulator: EmulatorServer,
            request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeSlack, Settings]]:
    """Fake Slack, the API with the bridge, one worker; the emulator replies in many small deltas."""
    emulator.config.reply_words, emulator.config.delta_interval_ms, emulator.config.chunk_chars = 120, 15, 8
    extra = getattr(request, "param", {})
    with fake_slack() as (fake, api_url):
        bridged = slack_settings(settings, api_url, delta_interval_ms=50, **extra)
        with BackgroundServer(create_app(bridged)) as server, workers(bridged, 1):
            yield server.url, fake, bridged


def the_turn(r: redis.Redis, settings: Settings) -> tuple[str, str]:
    conv = conversation_for(r, settings, f"slack:{TEAM_ID}:C2:{ROOT}")
    assert conv is not None
    [queued] = queued_turns(r, conv)
    return conv, queued["turn_id"]


def output_of(r: redis.Redis, settings: Settings) -> str:
    return str(r.hget(KEYS.turn(*the_turn(r, settings)), "output_text"))


def relayed(r: redis.Redis, settings: Settings) -> bool:
    """Whether the relay recorded the turn's reply as done."""
    conv, turn_id = the_turn(r, settings)
    return r.hget(KEYS.bridge_posted(conv, "slack", turn_id), "done") == "1"


def ask(url: str) -> None:
    event = envelope(mention("tell me a long story", ts=ROOT), event_id="EvR1")
    assert post_event(url, event).status_code == 200


def only_message(fake: FakeSlack) -> str:
    with fake.lock:
        [(ts, message)] = fake.messages.items()
    assert message.channel == "C2" and message.thread_ts == ROOT
    return ts


def test_a_mention_is_answered_by_a_stream_in_its_thread(bridge: tuple[str, FakeSlack, Settings],
                                                         redis_client: redis.Redis) -> None:
    """A status line, then chat.startStream to the user (recipient ids), appends while the turn is written,
    one stopStream; the message's text is the turn's output_text, and the turn's record says it is done."""
    url, fake, settings = bridge
    with relay_in_process(settings):
        ask(url)
        wait_until(lambda: fake.named("chat.stopStream"), timeout_s=30, message="the stream's stop")
    [status] = fake.named("assistant.threads.setStatus")
    assert status.params["thread_ts"] == ROOT and status.params["channel_id"] == "C2"
    [start] = fake.named("chat.startStream")
    assert start.params["recipient_user_id"] == "U7" and start.params["recipient_team_id"] == TEAM_ID
    assert start.params["thread_ts"] == ROOT
    assert len(fake.named("chat.appendStream")) >= 2 and len(fake.named("chat.stopStream")) == 1
    assert not fake.named("chat.postMessage")
    ts = only_message(fake)
    output = output_of(redis_client, settings)
    assert output and fake.messages[ts].text == output and fake.messages[ts].stops == 1
    appends = [c.at for c in fake.named("chat.appendStream")]
    assert all(b - a >= 0.45 for a, b in zip(appends, appends[1:], strict=False))
    assert redis_client.xpending(KEYS.bridge_turns("slack"), "relays")["pending"] == 0
    assert BOT_USER_ID not in output


@pytest.mark.parametrize("bridge", [{"slack_streaming": False}], indirect=True)
def test_without_streaming_the_reply_is_posted_then_edited_once_a_second(
        bridge: tuple[str, FakeSlack, Settings], redis_client: redis.Redis) -> None:
    """PARLEY_SLACK_STREAMING=false: chat.postMessage, then chat.update of the same message at most once a
    second, the last one with the whole output."""
    url, fake, settings = bridge
    with relay_in_process(settings):
        ask(url)
        wait_until(lambda: relayed(redis_client, settings), timeout_s=30, message="the reply done")
    assert not fake.named("chat.startStream")
    assert len(fake.named("chat.postMessage")) == 1
    updates = [c.at for c in fake.named("chat.update")]
    assert updates and all(b - a >= 0.95 for a, b in zip(updates, updates[1:], strict=False))
    assert fake.messages[only_message(fake)].text == output_of(redis_client, settings)


def test_when_slack_refuses_streaming_the_reply_is_posted(bridge: tuple[str, FakeSlack, Settings],
                                                          redis_client: redis.Redis) -> None:
    """chat.startStream answered with an error: the same reply goes out with postMessage and updates."""
    url, fake, settings = bridge
    fake.streaming_refused = True
    with relay_in_process(settings):
        ask(url)
        wait_until(lambda: fake.messages and fake.messages[only_message(fake)].text
                   == output_of(redis_client, settings), timeout_s=30, message="the whole reply")
    assert len(fake.named("chat.postMessage")) == 1


def test_a_rate_limited_call_is_waited_out(bridge: tuple[str, FakeSlack, Settings],
                                           redis_client: redis.Redis) -> None:
    """The first chat.appendStream gets a 429 with Retry-After: 1; it is made again after that second, and
    the reply is whole."""
    url, fake, settings = bridge
    fake.limited["chat.appendStream"] = 1
    with relay_in_process(settings):
        ask(url)
        wait_until(lambda: fake.named("chat.stopStream"), timeout_s=30, message="the stream's stop")
    with fake.lock:
        limited = [c for c in fake.calls if c.status == 429]
    [refused] = limited
    assert refused.method == "chat.appendStream"
    retried = [c for c in fake.named("chat.appendStream") if c.at > refused.at]
    assert retried and retried[0].at - refused.at >= 0.95
    assert fake.messages[only_message(fake)].text == output_of(redis_client, settings)


def test_a_relay_killed_mid_reply_is_continued_in_the_same_message(bridge: tuple[str, FakeSlack, Settings],
                                                                   redis_client: redis.Redis,
                                                                   emulator: EmulatorServer) -> None:
    """SIGKILL the relay process while it streams: the next relay takes the turn over, stops the stream it
    finds open and edits the rest into the same message: one startStream, no postMessage, one stopStream,
    the whole text once."""
    url, fake, settings = bridge
    emulator.config.reply_words, emulator.config.delta_interval_ms = 400, 20  # about 6 s of deltas
    env = settings_env(settings)
    command = ["python", "-m", "parley", "slack-relay", "--claim-idle-s", "1"]
    first = spawn(command, env=env)
    try:
        wait_until(lambda: redis_client.exists(KEYS.bridge_turns("slack")), timeout_s=30, message="the relay")
        ask(url)
        wait_until(lambda: len(fake.named("chat.appendStream")) >= 2, timeout_s=30, message="some appends")
    finally:
        stop(first, sig=signal.SIGKILL)
    assert not fake.named("chat.stopStream")
    second = spawn(command, env=env)
    try:
        wait_until(lambda: relayed(redis_client, settings), timeout_s=30, message="the reply done")
    finally:
        stop(second)
    assert len(fake.named("chat.startStream")) == 1 and not fake.named("chat.postMessage")
    assert len(fake.named("chat.stopStream")) == 1 and fake.named("chat.update")  # stopped, then edited
    assert fake.messages[only_message(fake)].text == output_of(redis_client, settings)


@pytest.mark.parametrize("bridge", [{"turn_deadline_s": 2.0}], indirect=True)
def test_a_failed_turn_posts_a_short_notice(bridge: tuple[str, FakeSlack, Settings],
                                            redis_client: redis.Redis, emulator: EmulatorServer) -> None:
    """Every upstream response fails until the turn's deadline: it ends turn.failed and the thread gets one
    short notice, as a message of its own, with no stream left open."""
    url, fake, settings = bridge
    emulator.config.p_fail = 1.0
    with relay_in_process(settings):
        ask(url)
        wait_until(lambda: fake.named("chat.postMessage"), timeout_s=30, message="the notice")
        wait_until(lambda: relayed(redis_client, settings), timeout_s=10, message="the turn done")
    [notice] = fake.named("chat.postMessage")
    assert notice.params["thread_ts"] == ROOT and "Sorry" in notice.params["text"]
    assert redis_client.hget(KEYS.turn(*the_turn(redis_client, settings)), "status") == "failed"
    assert len(fake.named("chat.startStream")) == len(fake.named("chat.stopStream"))


def test_while_the_turn_waits_for_a_retry_the_thread_status_says_so(
        bridge: tuple[str, FakeSlack, Settings], redis_client: redis.Redis, emulator: EmulatorServer) -> None:
    """The model answers 429 at first: while the worker waits to retry (``turn.retrying``), the thread's
    status line says the reply is still being worked on; no status is set once the stream started, and the
    streamed message is the whole output."""
    url, fake, settings = bridge
    emulator.config.p_429, emulator.config.retry_after_s = 1.0, 0.3
    with relay_in_process(settings):
        ask(url)
        wait_until(lambda: len(fake.named("assistant.threads.setStatus")) >= 2, timeout_s=30,
                   message="the retrying status")
        emulator.config.p_429 = 0.0
        wait_until(lambda: relayed(redis_client, settings), timeout_s=30, message="the reply done")
    statuses = fake.named("assistant.threads.setStatus")
    assert statuses[0].params["status"] == THINKING
    assert all(s.params["status"].startswith("is still working (") for s in statuses[1:])
    [start] = fake.named("chat.startStream")
    assert all(s.at < start.at for s in statuses)
    assert fake.messages[only_message(fake)].text == output_of(redis_client, settings)


def test_a_new_attempt_replaces_what_the_last_one_streamed(bridge: tuple[str, FakeSlack, Settings],
                                                            redis_client: redis.Redis,
                                                            emulator: EmulatorServer) -> None:
    """The model's stream drops after its first delta (and that response is lost upstream): the worker tries
    again, writing the reply from the start. What an earlier attempt streamed cannot be taken back from a
    stream, so that message is deleted and the thread ends with one message, the whole output."""
    url, fake, settings = bridge
    emulator.config.p_drop, emulator.config.drop_completes = 1.0, False
    with relay_in_process(settings):
        ask(url)
        wait_until(lambda: fake.named("chat.startStream"), timeout_s=30, message="the first attempt's stream")
        emulator.config.p_drop = 0.0
        wait_until(lambda: relayed(redis_client, settings), timeout_s=30, message="the reply done")
    # The worker may try more than twice before the drops are switched off (its first backoff is short):
    # every attempt that streamed is deleted before the next one starts, and only the last one stays.
    starts, deletes = fake.named("chat.startStream"), fake.named("chat.delete")
    assert len(starts) >= 2 and len(deletes) == len(starts) - 1
    assert all(start.at < deleted.at < after.at for start, deleted, after in zip(starts, deletes, starts[1:]))
    kept = only_message(fake)
    assert kept not in {deleted.params["ts"] for deleted in deletes}
    assert fake.messages[kept].text == output_of(redis_client, settings)


def test_a_long_reply_goes_on_in_further_messages_of_the_thread(bridge: tuple[str, FakeSlack, Settings],
                                                                 redis_client: redis.Redis) -> None:
    """With messages of at most 200 characters (Slack's is 12,000), the reply is several streamed messages in
    the thread, each stopped once and within the limit, together the whole output in order."""
    url, fake, settings = bridge
    with relay_in_process(settings, message_max_chars=200):
        ask(url)
        wait_until(lambda: relayed(redis_client, settings), timeout_s=30, message="the reply done")
    output = output_of(redis_client, settings)
    starts = fake.named("chat.startStream")
    assert len(starts) >= 3 and len(fake.named("chat.stopStream")) == len(starts)
    with fake.lock:
        texts = [fake.messages[ts].text for ts in sorted(fake.messages)]
        assert all(m.stops == 1 and m.thread_ts == ROOT for m in fake.messages.values())
    assert all(len(text) <= 200 for text in texts) and "".join(texts) == output


@pytest.mark.parametrize("bridge", [{"double_texting": "interrupt"}], indirect=True)
def test_an_interrupted_reply_is_taken_back_and_the_answering_turn_posts(
        bridge: tuple[str, FakeSlack, Settings], redis_client: redis.Redis, emulator: EmulatorServer) -> None:
    """Policy interrupt: a second message in the thread while the first reply streams stops it (its stream
    stopped, its message deleted) and the turn that answers both streams the reply; one message is left,
    the second turn's output."""
    url, fake, settings = bridge
    emulator.config.reply_words, emulator.config.delta_interval_ms = 400, 20
    with relay_in_process(settings):
        ask(url)
        wait_until(lambda: len(fake.named("chat.appendStream")) >= 2, timeout_s=30, message="some appends")
        more = {"type": "message", "channel": "C2", "channel_type": "channel", "user": "U7",
                "text": "in short, please", "ts": "1712345690.000200", "thread_ts": ROOT, "team": TEAM_ID}
        assert post_event(url, envelope(more, event_id="EvR2")).status_code == 200
        conv = conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:{ROOT}")
        assert conv is not None
        first, second = [t["turn_id"] for t in queued_turns(redis_client, conv)]
        wait_until(lambda: redis_client.hget(KEYS.bridge_posted(conv, "slack", second), "done") == "1",
                   timeout_s=60, message="the answering turn's reply")
    assert redis_client.hget(KEYS.turn(conv, first), "status") == "interrupted"
    assert len(fake.named("chat.delete")) == 1
    starts = fake.named("chat.startStream")
    assert len(starts) == 2 and len(fake.named("chat.stopStream")) == 2
    with fake.lock:
        [message] = fake.messages.values()
    assert message.text == redis_client.hget(KEYS.turn(conv, second), "output_text")


def test_a_retried_event_is_answered_once(bridge: tuple[str, FakeSlack, Settings],
                                          redis_client: redis.Redis) -> None:
    """Slack delivers the mention four times (announced four times, to a relay already streaming the
    first): one stream, one message."""
    url, fake, settings = bridge
    with relay_in_process(settings):
        event = envelope(mention("tell me a long story", ts=ROOT), event_id="EvR1")
        for retry in (None, 1, 2, 3):
            assert post_event(url, event, retry=retry).status_code == 200
        wait_until(lambda: relayed(redis_client, settings), timeout_s=30, message="the reply done")
        wait_until(lambda: redis_client.xpending(KEYS.bridge_turns("slack"), "relays")["pending"] == 0,
                   timeout_s=10, message="every entry acknowledged")
    assert len(fake.named("chat.startStream")) == 1 and len(fake.named("chat.stopStream")) == 1
    assert fake.messages[only_message(fake)].text == output_of(redis_client, settings)


def test_a_relay_stopped_mid_reply_stops_its_stream_and_the_next_edits_it(
        bridge: tuple[str, FakeSlack, Settings], redis_client: redis.Redis, emulator: EmulatorServer) -> None:
    """A relay shut down while it streams stops the stream on its way out (never left open); the relay
    that takes the turn over goes on in the same message with chat.update, and it ends whole."""
    url, fake, settings = bridge
    # The reply takes 8 s from its first delta to its end whatever the machine's speed (the emulator spreads
    # the deltas over the latency), so the first relay is stopped well before the end.
    emulator.config.reply_words, emulator.config.latency_ms, emulator.config.ttft_ms = 200, (8000, 8000), 100
    with relay_in_process(settings, claim_idle_ms=1000):
        ask(url)
        wait_until(lambda: len(fake.named("chat.appendStream")) >= 2, timeout_s=30, message="some appends")
    assert len(fake.named("chat.stopStream")) == 1 and not relayed(redis_client, settings)
    with relay_in_process(settings, claim_idle_ms=1000):
        wait_until(lambda: relayed(redis_client, settings), timeout_s=30, message="the reply done")
    assert len(fake.named("chat.startStream")) == 1 and not fake.named("chat.postMessage")
    assert fake.named("chat.update") and len(fake.named("chat.stopStream")) == 1
    assert fake.messages[only_message(fake)].text == output_of(redis_client, settings)
