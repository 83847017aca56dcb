"""A Slack relay taking over a turn that was tried again, on a real Redis against the fake Slack Web API: the
turn comes in through the real API (a signed app_mention), and its events are written by the test as a
worker writes them, so each relay is stopped at a known point of the reply on any machine."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from conftest import settings_env, wait_until
from slack_fake import TEAM_ID, FakeSlack
from slack_support import (
    KEYS,
    bridged_api,
    conversation_for,
    envelope,
    mention,
    post_event,
    queued_turns,
    relay_in_process,
)

from parley.worker.local.processes import spawn, stop
from parley.worker.settings import Settings

ROOT = "1712345678.000300"


@pytest.fixture(name="bridge")
def _bridge(settings: Settings) -> Iterator[tuple[str, FakeSlack, Settings]]:
    """Fake Slack and the API with the bridge; no worker (the test writes the turn's events)."""
    with bridged_api(settings) as bridge:
        yield bridge


class Turn:
    """The turn one mention became, and its events written into its conversation's stream."""

    def __init__(self, client: redis.Redis, settings: Settings, url: str) -> None:
        event = envelope(mention("tell me", ts=ROOT), event_id="EvT1")
        assert post_event(url, event).status_code == 200
        conv = conversation_for(client, settings, f"slack:{TEAM_ID}:C2:{ROOT}")
        assert conv is not None
        [queued] = queued_turns(client, conv)
        self.client, self.conv, self.id = client, conv, str(queued["turn_id"])

    def event(self, type_: str, **fields: object) -> int:
        """Write the event; returns its seq."""
        seq = int(self.client.incr(KEYS.seq(self.conv)))
        body = {"id": f"{self.id}.{seq}", "type": type_, "conversation_id": self.conv, "turn_id": self.id,
                "seq": seq, "created_at": time.time(), **fields}
        self.client.xadd(KEYS.events(self.conv), {"data": json.dumps(body)}, id=f"{seq}-0")
        return seq

    def posted(self) -> dict[str, str]:
        return dict(self.client.hgetall(KEYS.bridge_posted(self.conv, "slack", self.id)))


def test_a_retried_turn_taken_over_goes_on_with_its_last_attempt(bridge: tuple[str, FakeSlack, Settings],
                                                                 redis_client: redis.Redis) -> None:
    """The first attempt streams a message, the worker tries again: that message is deleted and the new
    attempt streams a second one; the relay is stopped. The relay taking the turn over reads the turn's
    events from the last start-over on record (the second attempt's start), so it never meets the first
    attempt again, and finishes the second message in place: no delete, no new message, and every text it
    sends is the new attempt's."""
    url, fake, settings = bridge
    turn = Turn(redis_client, settings, url)
    with relay_in_process(settings, claim_idle_ms=1000):
        turn.event("turn.started", attempt=1)
        turn.event("response.delta", delta="A first try that ")
        wait_until(lambda: fake.named("chat.startStream"), timeout_s=10, message="the first attempt's stream")
        turn.event("turn.retrying", cause="http_5xx", attempt=1, retry_at=time.time() + 1)
        second = turn.event("turn.started", attempt=2)
        turn.event("response.delta", delta="The answer")
        wait_until(lambda: turn.posted().get("sent_chars") == str(len("The answer")), timeout_s=10,
                   message="the new attempt's stream")
    assert turn.posted()["restart_seq"] == str(second) and len(fake.named("chat.delete")) == 1
    [kept] = list(fake.messages)
    before = len(fake.calls)
    turn.event("response.delta", delta=" is 42.")
    turn.event("turn.completed", output_text="The answer is 42.")
    with relay_in_process(settings, claim_idle_ms=1000):
        wait_until(lambda: turn.posted().get("done") == "1", timeout_s=30, message="the reply done")
    with fake.lock:
        after = [c for c in fake.calls[before:] if c.ok]
    assert not [c for c in after if c.method in ("chat.delete", "chat.startStream", "chat.postMessage")]
    sent = [c.params.get("text") or c.params.get("markdown_text") for c in after
            if c.method in ("chat.update", "chat.appendStream")]
    assert sent and all("The answer is 42.".startswith(str(text)) for text in sent), sent
    assert list(fake.messages) == [kept] and fake.messages[kept].text == "The answer is 42."


def test_a_piece_that_reached_slack_but_not_the_record_is_not_shown_twice(
        bridge: tuple[str, FakeSlack, Settings], redis_client: redis.Redis) -> None:
    """The relay (its own process) is SIGKILLed while it streams, and its record is set back by the last
    piece, as if the kill had come between that append reaching Slack and its record. The relay taking the
    turn over stops the stream it finds open and edits the message from then on (an edit sets the whole
    text), so the message ends as the output, without that piece twice; one message, one stream."""
    url, fake, settings = bridge
    turn = Turn(redis_client, settings, url)
    command = ["python", "-m", "parley", "slack-relay", "--claim-idle-s", "1"]
    first = spawn(command, env=settings_env(settings))
    try:
        turn.event("turn.started", attempt=1)
        turn.event("response.delta", delta="The answer")
        wait_until(lambda: turn.posted().get("sent_chars") == "10", timeout_s=30, message="the stream")
        turn.event("response.delta", delta=" is")
        wait_until(lambda: turn.posted().get("sent_chars") == "13", timeout_s=10, message="the append")
    finally:
        stop(first, sig=signal.SIGKILL)
    redis_client.hset(KEYS.bridge_posted(turn.conv, "slack", turn.id), "sent_chars", "10")
    turn.event("response.delta", delta=" 42.")
    turn.event("turn.completed", output_text="The answer is 42.")
    second = spawn(command, env=settings_env(settings))
    try:
        wait_until(lambda: turn.posted().get("done") == "1", timeout_s=30, message="the reply done")
    finally:
        stop(second)
    [kept] = list(fake.messages)
    assert fake.messages[kept].text == "The answer is 42."
    assert len(fake.named("chat.startStream")) == 1 and len(fake.named("chat.stopStream")) == 1
    assert fake.named("chat.update") and not fake.named("chat.postMessage")
