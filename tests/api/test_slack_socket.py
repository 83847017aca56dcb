"""``parley slack-socket`` as its own process (as it runs) against the fake Slack: it opens the connection
with the app-level token (``apps.connections.open`` at ``PARLEY_SLACK_API_URL``), takes the events the
websocket delivers through the same Bolt listener as ``POST /slack/events`` (real Redis, the emulator for the
upstream conversation) and acks each envelope once its turn is in Redis; a connection Slack ends is opened
again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from conftest import settings_env, wait_until
from pydantic import SecretStr
from slack_fake import APP_TOKEN, TEAM_ID, TOKEN, FakeSlack, fake_slack
from slack_support import (
    KEYS,
    conversation_for,
    envelope,
    mention,
    queued_turns,
    slack_settings,
    socket_envelope,
)

from parley.worker.local.processes import spawn, stop
from parley.worker.settings import Settings


@contextmanager
def socket_mode(settings: Settings, fake: FakeSlack) -> Iterator[None]:
    """``parley slack-socket`` running until the block ends, connected to the fake with the app token."""
    process = spawn(["python", "-m", "parley", "slack-socket"], env=settings_env(settings), quiet=True)
    try:
        wait_until(lambda: fake.named("apps.connections.open") or process.poll() is not None, timeout_s=30,
                   message="apps.connections.open")
        assert process.poll() is None, "parley slack-socket exited"
        yield
    finally:
        stop(process)


def test_a_mention_over_socket_mode_is_one_turn_acked_even_when_delivered_twice(
        settings: Settings, redis_client: redis.Redis) -> None:
    """The envelope is acked by its id; the thread's conversation has one turn whose idempotency key is the
    event_id; Slack's redelivery of the same envelope is acked too and finds that turn (announced again,
    as a redelivered HTTP event is, for a relay that missed the first announcement)."""
    with fake_slack() as (fake, api_url):
        bridged = slack_settings(settings, api_url, slack_app_token=SecretStr(APP_TOKEN))
        body = envelope(mention("hello over a socket", ts="1712345678.000700"), event_id="EvS700")
        fake.envelopes = [socket_envelope(body, "env-700"), socket_envelope(body, "env-700", retry_attempt=1)]
        with socket_mode(bridged, fake):
            wait_until(lambda: len(fake.acks) >= 2, timeout_s=30, message="both deliveries acked")
    assert fake.acks == [{"envelope_id": "env-700"}, {"envelope_id": "env-700"}]
    assert fake.redeliveries == 0
    conv = conversation_for(redis_client, bridged, f"slack:{TEAM_ID}:C2:1712345678.000700")
    assert conv is not None and redis_client.hget(KEYS.conversation(conv), "tenant") == "slack"
    [queued] = queued_turns(redis_client, conv)
    turn = redis_client.hgetall(KEYS.turn(conv, queued["turn_id"]))
    assert turn["idempotency_key"] == "EvS700" and "hello over a socket" in turn["input"]
    announced = [fields for _, fields in redis_client.xrange(KEYS.bridge_turns("slack"))]
    assert announced == [{"turn_id": queued["turn_id"], "conversation_id": conv}] * 2
    assert [c.ok for c in fake.calls if c.method == "apps.connections.open"] == [True]


def test_an_event_not_taken_is_not_acked_so_slack_delivers_it_again(settings: Settings,
                                                                     redis_client: redis.Redis) -> None:
    """auth.test failing (Slack down): Bolt's 500 sends no ack, the fake redelivers after its ack timeout,
    and once auth.test answers the redelivery is the one turn, then acked."""
    with fake_slack() as (fake, api_url):
        fake.auth_down, fake.ack_timeout_s = True, 1.0
        bridged = slack_settings(settings, api_url, slack_app_token=SecretStr(APP_TOKEN))
        body = envelope(mention(ts="1712345678.000800"), event_id="EvS800")
        fake.envelopes = [socket_envelope(body, "env-800")]
        with socket_mode(bridged, fake):
            wait_until(lambda: any(c.method == "auth.test" for c in fake.calls), timeout_s=30,
                       message="a failed auth.test")
            key = f"slack:{TEAM_ID}:C2:1712345678.000800"
            assert conversation_for(redis_client, bridged, key) is None
            fake.auth_down = False
            wait_until(lambda: fake.acks, timeout_s=30, message="the redelivery acked")
    assert fake.acks == [{"envelope_id": "env-800"}] and fake.redeliveries >= 1
    conv = conversation_for(redis_client, bridged, key)
    assert conv is not None and len(queued_turns(redis_client, conv)) == 1


@pytest.mark.parametrize("says_disconnect", [True, False], ids=["disconnect-message", "socket-dropped"])
def test_a_connection_slack_ends_is_opened_again_and_the_rest_delivered(
        says_disconnect: bool, settings: Settings, redis_client: redis.Redis) -> None:
    """Slack ends a Socket Mode connection every few hours (a ``disconnect`` message, ``refresh_requested``)
    and a socket can drop without one: after the first envelope is acked the fake ends the connection; the
    process opens a new one (``apps.connections.open`` again) and takes the second envelope there: two turns,
    one each, every delivery acked."""
    threads = ["1712345678.000901", "1712345678.000902"]
    with fake_slack() as (fake, api_url):
        fake.drop_after_acks, fake.drop_says_disconnect = 1, says_disconnect
        bridged = slack_settings(settings, api_url, slack_app_token=SecretStr(APP_TOKEN))
        fake.envelopes = [socket_envelope(envelope(mention(f"message {n}", ts=ts), event_id=f"EvS9{n}"),
                                          f"env-9{n}") for n, ts in enumerate(threads)]
        with socket_mode(bridged, fake):
            wait_until(lambda: len(fake.acks) >= 2, timeout_s=45, message="both envelopes acked")
    # The second may come twice: slack_sdk, told to disconnect, opens a new connection and then another when
    # the old one closes, and an envelope sent on a connection the client leaves before its ack is sent again.
    assert fake.acks[0] == {"envelope_id": "env-90"} and {a["envelope_id"] for a in fake.acks[1:]} == {"env-91"}
    assert fake.connections >= 2 and len(fake.named("apps.connections.open")) >= 2
    for ts in threads:
        conv = conversation_for(redis_client, bridged, f"slack:{TEAM_ID}:C2:{ts}")
        assert conv is not None and len(queued_turns(redis_client, conv)) == 1


def test_a_refused_app_token_is_exit_1_and_one_line(settings: Settings) -> None:
    """The bot token given as the app-level token: Slack's not_allowed_token_type ends the command with
    code 1 and says so, instead of slack_sdk retrying the connection forever."""
    with fake_slack() as (fake, api_url):
        bridged = slack_settings(settings, api_url, slack_app_token=SecretStr(TOKEN))
        process = spawn(["python", "-m", "parley", "slack-socket"], env=settings_env(bridged), pipe=True)
        try:
            output, _ = process.communicate(timeout=60)
        finally:
            stop(process)
    assert process.returncode == 1
    assert b"Slack refused the Socket Mode connection: not_allowed_token_type" in output
    assert b"Traceback" not in output and not fake.acks
