"""Slack events as Slack sends them: real-shaped payloads, signed with the app's signing secret (``v0:``
HMAC-SHA256, what Bolt checks), and the turns they became, read back from Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import redis
from loop_thread import serving
from pydantic import SecretStr
from slack_fake import BOT_USER_ID, TEAM_ID, TOKEN, FakeSlack, fake_slack
from slack_sdk.signature import SignatureVerifier

from parley.api.bridges.slack.relay import serve
from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
KEYS = Keys()


def slack_settings(settings: Settings, api_url: str, **more: Any) -> Settings:
    return settings.model_copy(update={"slack_signing_secret": SecretStr(SECRET),
                                       "slack_bot_token": SecretStr(TOKEN), "slack_api_url": api_url, **more})


def signed(body: dict[str, Any] | str, *, secret: str = SECRET, at: float | None = None,
           retry: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, str) else json.dumps(body)
    timestamp = str(int(at if at is not None else time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=raw)
    headers = {"content-type": "application/json", "x-slack-request-timestamp": timestamp,
               "x-slack-signature": signature}
    if retry:
        headers |= {"x-slack-retry-num": str(retry), "x-slack-retry-reason": "http_timeout"}
    return raw.encode(), headers


def post_event(base_url: str, body: dict[str, Any], **how: Any) -> httpx.Response:
    raw, headers = signed(body, **how)
    return httpx.post(f"{base_url}/slack/events", content=raw, headers=headers, timeout=30)


def envelope(event: dict[str, Any], *, event_id: str = "Ev01") -> dict[str, Any]:
    return {"token": "legacy", "team_id": TEAM_ID, "api_app_id": "A1", "event": event,
            "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                                "is_bot": True, "is_enterprise_install": False}]}


def socket_envelope(body: dict[str, Any], envelope_id: str, *, retry_attempt: int = 0) -> dict[str, Any]:
    """An Events API body as Socket Mode delivers it: inside an envelope the client acks by its id."""
    return {"envelope_id": envelope_id, "type": "events_api", "payload": body,
            "accepts_response_payload": False, "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else ""}


def mention(text: str = "what is parley?", *, ts: str = "1712345678.000100", thread_ts: str | None = None,
            channel: str = "C2", user: str = "U7") -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> {text}", "ts": ts,
             "channel": channel, "team": TEAM_ID, "event_ts": ts, "client_msg_id": f"m-{ts}"}
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def conversation_for(r: redis.Redis, settings: Settings, key: str) -> str | None:
    value = r.get(KEYS.conversation_key(settings.slack_tenant, key))
    return str(value) if value is not None else None


def queued_turns(r: redis.Redis, conversation_id: str) -> list[dict[str, Any]]:
    """The turn.queued events of the conversation, oldest first: one per accepted turn."""
    events = [json.loads(fields["data"]) for _, fields in r.xrange(KEYS.events(conversation_id))]
    return [event for event in events if event["type"] == "turn.queued"]


@contextmanager
def relay_in_process(settings: Settings, **how: object) -> Iterator[None]:
    """The relay on a thread with its own event loop, stopped (its finally blocks run) on the way out."""
    with serving(lambda stop: serve(settings, stop=stop, **how)):  # type: ignore[arg-type]
        yield


@contextmanager
def bridged_api(settings: Settings) -> Iterator[tuple[str, FakeSlack, Settings]]:
    """The fake Slack and the API with the Slack bridge mounted: the API's URL, the fake and the settings."""
    with fake_slack() as (fake, api_url):
        bridged = slack_settings(settings, api_url)
        with BackgroundServer(create_app(bridged)) as server:
            yield server.url, fake, bridged
