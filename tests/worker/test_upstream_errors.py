"""Honest upstream errors: the provider's own reason reaches the turn, its event, the logs and the API answer;
a wrong OpenAI key is ``upstream_auth_failed``, permanent, never "retry shortly"."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import redis
import structlog
from pydantic import SecretStr
from secrets_support import dump_redis
from test_drain import Harness

from parley.api.main import create_app
from parley.worker.events.replies import relay
from parley.worker.local.background import BackgroundServer, free_port
from parley.worker.local.emulator import EmulatorServer
from parley.worker.log import register_secrets
from parley.worker.settings import Settings

RIGHT_KEY = "sk-right-0123456789abcdef"
WRONG_KEY = "sk-wrong-0123456789abcdef"


@pytest.fixture(name="wrong_key")
def _wrong_key(settings: Settings) -> Settings:
    return settings.model_copy(update={"openai_api_key": SecretStr(WRONG_KEY)})


def test_a_wrong_key_fails_the_turn_at_once_with_the_providers_reason(
        wrong_key: Settings, redis_client: redis.Redis, emulator: EmulatorServer) -> None:
    """One attempt, no retry, not dead-lettered; the turn, its ``turn.failed`` event and the log line say
    ``upstream_auth_failed`` with OpenAI's sentence, and the key itself is not repeated in full."""
    h = Harness(wrong_key, redis_client, emulator)
    emulator.config.api_keys = (RIGHT_KEY,)
    turn_id = h.post("hello")
    with structlog.testing.capture_logs() as logs:
        h.drainer.drain(h.conv)
    turn = h.turn(turn_id)
    assert turn.status.value == "failed" and turn.attempts == 1
    assert turn.error is not None and turn.error.type == "upstream_auth_failed" and turn.error.status_code == 401
    assert turn.error.message.startswith("Incorrect API key provided") and WRONG_KEY not in turn.error.message
    failed = [e for e in h.events() if e["type"] == "turn.failed"]
    assert [e["error"]["type"] for e in failed] == ["upstream_auth_failed"]  # type: ignore[index]
    assert redis_client.zcard(h.mailbox.keys.dead_letters) == 0
    lines = [line for line in logs if line["event"] == "turn_failed"]
    assert lines and lines[0]["error"] == "upstream_auth_failed" and "Incorrect API key" in lines[0]["message"]
    assert WRONG_KEY not in json.dumps(logs, default=str)


ECHOED_KEY = "proxy-token-7Hq2ZkW9xLm4"
"""Not shaped like an OpenAI key, so no pattern knows it: only masking this process's secrets by value can."""


def test_a_provider_that_echoes_the_key_gets_it_masked_everywhere(
        settings: Settings, redis_client: redis.Redis, emulator: EmulatorServer) -> None:
    """A 401 that repeats the rejected key in full and the Authorization header as sent: the turn record, its
    events, the global replies stream (everything in Redis) and the log lines hold the provider's sentence
    with the key masked, never the key."""
    planted = settings.model_copy(update={"openai_api_key": SecretStr(ECHOED_KEY)})
    register_secrets(planted)  # as every parley process does when it configures its logging
    h = Harness(planted, redis_client, emulator)
    emulator.config.api_keys, emulator.config.echo_rejected_key = (RIGHT_KEY,), True
    turn_id = h.post("hello")
    with structlog.testing.capture_logs() as logs:
        h.drainer.drain(h.conv)
    relay(redis_client, h.mailbox.keys, h.conv, maxlen=100)  # whatever the drain left in the outbox
    turn = h.turn(turn_id)
    assert turn.status.value == "failed" and turn.error is not None
    # The provider did echo it (the mask is there), and parley kept the rest of its sentence.
    assert turn.error.message.startswith(
        "Incorrect API key provided: [redacted] (Authorization: Bearer [redacted]")
    assert [e["type"] for e in h.events()][-1] == "turn.failed"
    replies = redis_client.xrange(h.mailbox.keys.replies)
    assert [json.loads(fields["data"])["turn_id"] for _, fields in replies] == [turn_id]
    stored = dump_redis(redis_client)
    assert "[redacted]" in stored and ECHOED_KEY not in stored
    assert ECHOED_KEY not in json.dumps(logs, default=str)


def _api(settings: Settings) -> BackgroundServer:
    return BackgroundServer(create_app(settings))


def test_api_answers_a_wrong_key_with_502_upstream_auth_failed(
        wrong_key: Settings, emulator: EmulatorServer, api_http: Callable[..., httpx.Client]) -> None:
    """Creating a conversation with a rejected key is the operator's problem to fix: 502, no Retry-After, and
    the provider's reason in the message."""
    emulator.config.api_keys = (RIGHT_KEY,)
    with _api(wrong_key) as server, api_http(server.url) as http:
        response = http.post("/v1/conversations", json={})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] == "upstream_auth_failed" and "Incorrect API key provided" in error["message"]
    assert "retry-after" not in response.headers and WRONG_KEY not in response.text


def test_api_names_the_cause_when_upstream_cannot_be_reached(
        settings: Settings, api_http: Callable[..., httpx.Client]) -> None:
    """No network (here: a closed port) is 503 with Retry-After, and the message says it was the connection."""
    unreachable = settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{free_port()}/v1"})
    with _api(unreachable) as server, api_http(server.url) as http:
        response = http.post("/v1/conversations", json={})
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    assert "connection" in response.json()["error"]["message"].lower()
