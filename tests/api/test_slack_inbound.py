"""``POST /slack/events`` on the real API app (uvicorn, Redis, the emulator for the upstream conversation),
with requests signed as Slack signs them and Bolt's auth.test answered by the fake Slack Web API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from slack_fake import BOT_USER_ID, TEAM_ID, FakeSlack, fake_slack
from slack_support import (
    KEYS,
    bridged_api,
    conversation_for,
    envelope,
    mention,
    post_event,
    queued_turns,
    signed,
    slack_settings,
)

from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.settings import Settings


@pytest.fixture(name="slack_api")
def _slack_api(settings: Settings) -> Iterator[tuple[str, FakeSlack, Settings]]:
    """The API with the Slack bridge mounted; yields its URL, the fake Slack and the settings."""
    with bridged_api(settings) as bridge:
        yield bridge


def test_url_verification_echoes_the_challenge(slack_api: tuple[str, FakeSlack, Settings]) -> None:
    """Slack's endpoint check, signed like any request, gets its challenge back."""
    url, _, _ = slack_api
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXA"
    response = post_event(url, {"token": "legacy", "challenge": challenge, "type": "url_verification"})
    assert response.status_code == 200 and challenge in response.text


def test_bad_or_stale_signatures_are_401(slack_api: tuple[str, FakeSlack, Settings],
                                         redis_client: redis.Redis) -> None:
    """Signed with another secret, five minutes old, unsigned or with a changed body: 401, nothing
    enqueued."""
    url, _, settings = slack_api
    body = envelope(mention())
    assert post_event(url, body, secret="not-the-secret").status_code == 401
    assert post_event(url, body, at=time.time() - 600).status_code == 401
    raw, headers = signed(body)
    import httpx

    assert httpx.post(f"{url}/slack/events", content=raw.replace(b"parley", b"Parley"), headers=headers,
                      timeout=30).status_code == 401
    assert httpx.post(f"{url}/slack/events", content=raw, headers={"content-type": "application/json"},
                      timeout=30).status_code == 401
    assert conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:1712345678.000100") is None


def test_a_mention_becomes_one_turn_with_the_thread_in_its_metadata(
        slack_api: tuple[str, FakeSlack, Settings], redis_client: redis.Redis) -> None:
    """The thread's conversation is created under the Slack tenant, the turn's input is the text without
    the mention, its idempotency key the event_id, its metadata what the relay needs; it is announced."""
    url, fake, settings = slack_api
    assert post_event(url, envelope(mention("what is  parley?"), event_id="Ev100")).status_code == 200
    conv = conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:1712345678.000100")
    assert conv is not None
    assert redis_client.hget(KEYS.conversation(conv), "tenant") == "slack"
    [queued] = queued_turns(redis_client, conv)
    assert queued["metadata"] == {"team": TEAM_ID, "channel": "C2", "thread_ts": "1712345678.000100",
                                  "ts": "1712345678.000100", "user": "U7", "user_team": TEAM_ID}
    turn = redis_client.hgetall(KEYS.turn(conv, queued["turn_id"]))
    assert turn["idempotency_key"] == "Ev100" and "what is parley?" in turn["input"]
    [(_, announced)] = redis_client.xrange(KEYS.bridge_turns("slack"))
    assert announced == {"turn_id": queued["turn_id"], "conversation_id": conv}
    assert [c.method for c in fake.calls] == ["auth.test"]  # the bot's user id, once; nothing posted


def test_a_retried_event_is_one_turn_even_in_parallel(slack_api: tuple[str, FakeSlack, Settings],
                                                       redis_client: redis.Redis) -> None:
    """The first delivery and its three retries (X-Slack-Retry-Num 1-3) at the same time: all 200, one
    conversation, one turn."""
    url, _, settings = slack_api
    body = envelope(mention(ts="1712345678.000200"), event_id="Ev200")
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda n: post_event(url, body, retry=n or None).status_code, range(4)))
    assert statuses == [200] * 4
    conv = conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:1712345678.000200")
    assert conv is not None and len(queued_turns(redis_client, conv)) == 1


def test_thread_replies_are_followed_only_in_threads_parley_has(slack_api: tuple[str, FakeSlack, Settings],
                                                                 redis_client: redis.Redis) -> None:
    """After a mention starts a thread, a plain reply in it is a turn of the same conversation; a reply in
    another thread, bot messages, edits, deletes and joins are not; a DM is."""
    url, _, settings = slack_api
    root = "1712345678.000300"
    post_event(url, envelope(mention(ts=root), event_id="Ev300"))
    reply = {"type": "message", "channel": "C2", "channel_type": "channel", "user": "U7", "text": "and more?",
             "ts": "1712345679.000301", "thread_ts": root, "team": TEAM_ID}
    ignored = [
        reply | {"thread_ts": "1712345600.000001", "ts": "1712345679.000302"},
        reply | {"bot_id": "B9", "user": "U9", "ts": "1712345679.000303"},
        reply | {"user": BOT_USER_ID, "ts": "1712345679.000304"},
        {"type": "message", "subtype": "message_changed", "channel": "C2", "channel_type": "channel",
         "ts": "1712345679.000305", "message": {"user": "U7", "text": "edited", "ts": "1712345679.000301"}},
        {"type": "message", "subtype": "message_deleted", "channel": "C2", "channel_type": "channel",
         "ts": "1712345679.000306", "deleted_ts": "1712345679.000301"},
        reply | {"subtype": "channel_join", "ts": "1712345679.000307", "text": "<@U7> has joined"},
    ]
    for n, event in enumerate([reply, *ignored]):
        assert post_event(url, envelope(event, event_id=f"Ev31{n}")).status_code == 200
    conv = conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:{root}")
    assert conv is not None
    assert [t["metadata"]["ts"] for t in queued_turns(redis_client, conv)] == [root, "1712345679.000301"]
    assert conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:1712345600.000001") is None
    dm = {"type": "message", "channel": "D5", "channel_type": "im", "user": "U7", "text": "hi",
          "ts": "1712345680.000400", "team": TEAM_ID}
    assert post_event(url, envelope(dm, event_id="Ev400")).status_code == 200
    dm_conv = conversation_for(redis_client, settings, f"slack:{TEAM_ID}:D5:1712345680.000400")
    assert dm_conv is not None and len(queued_turns(redis_client, dm_conv)) == 1


def test_an_event_slack_cannot_identify_the_bot_for_is_a_5xx_to_retry(
        slack_api: tuple[str, FakeSlack, Settings], redis_client: redis.Redis) -> None:
    """auth.test failing (Slack down) is a 500, not the 200 that would drop the event; Slack's retry, once
    it is back, is the turn."""
    url, fake, settings = slack_api
    fake.auth_down = True
    body = envelope(mention(ts="1712345678.000500"), event_id="Ev500")
    assert post_event(url, body).status_code == 500
    key = f"slack:{TEAM_ID}:C2:1712345678.000500"
    assert conversation_for(redis_client, settings, key) is None
    fake.auth_down = False
    assert post_event(url, body, retry=1).status_code == 200
    conv = conversation_for(redis_client, settings, key)
    assert conv is not None and len(queued_turns(redis_client, conv)) == 1


def test_an_event_parley_cannot_take_now_is_a_5xx_to_retry(settings: Settings,
                                                           redis_client: redis.Redis) -> None:
    """The thread's mailbox is full (cap 1, no worker): the second message is answered 500, so Slack retries
    it later, instead of being acked and dropped; it is not announced."""
    with fake_slack() as (_, api_url):
        full = slack_settings(settings, api_url, mailbox_cap=1)
        with BackgroundServer(create_app(full)) as server:
            assert post_event(server.url, envelope(mention(), event_id="Ev600")).status_code == 200
            again = mention("one more", ts="1712345679.000601", thread_ts="1712345678.000100")
            assert post_event(server.url, envelope(again, event_id="Ev601")).status_code == 500
    assert redis_client.xlen(KEYS.bridge_turns("slack")) == 1


def test_an_image_is_downloaded_with_the_bot_token_into_the_turn(slack_api: tuple[str, FakeSlack, Settings],
                                                                 redis_client: redis.Redis) -> None:
    """A mention with a png, a pdf and a png Slack no longer has: the png is fetched from url_private with
    the bot token before the 200 and is an input_image data URL of the stored turn; the other two are named
    in its text."""
    import base64
    import json

    url, fake, settings = slack_api
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    fake.files["cat.png"] = (png, "image/png")
    files_url = str(settings.slack_api_url).removesuffix("/api/") + "/files"
    event = mention("what is on this picture?") | {"files": [
        {"name": "cat.png", "mimetype": "image/png", "size": len(png), "url_private": f"{files_url}/cat.png"},
        {"name": "report.pdf", "mimetype": "application/pdf", "size": 10,
         "url_private": f"{files_url}/report.pdf"},
        {"name": "gone.png", "mimetype": "image/png", "size": 10, "url_private": f"{files_url}/gone.png"}]}
    assert post_event(url, envelope(event, event_id="Ev300")).status_code == 200
    assert fake.downloads == ["cat.png"]
    conv = conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:1712345678.000100")
    assert conv is not None
    [queued] = queued_turns(redis_client, conv)
    [message] = json.loads(redis_client.hget(KEYS.turn(conv, queued["turn_id"]), "input") or "")
    text, image = message["content"]
    assert text["text"] == "what is on this picture?\n[attached: report.pdf] [attached: gone.png]"
    assert image == {"type": "input_image", "detail": "auto",
                     "image_url": f"data:image/png;base64,{base64.b64encode(png).decode()}"}


def test_a_slow_download_is_cut_short_and_the_image_named(slack_api: tuple[str, FakeSlack, Settings],
                                                          redis_client: redis.Redis) -> None:
    """Slack's file server taking 5 s: the event is still answered within Slack's 3 s, with the image named
    in the turn's text instead of sent."""
    import json

    url, fake, settings = slack_api
    fake.files["slow.png"], fake.file_delay_s = (b"\x89PNG", "image/png"), 5.0
    files_url = str(settings.slack_api_url).removesuffix("/api/") + "/files"
    event = mention("and this?") | {"files": [{"name": "slow.png", "mimetype": "image/png", "size": 4,
                                              "url_private": f"{files_url}/slow.png"}]}
    started = time.monotonic()
    assert post_event(url, envelope(event, event_id="Ev301")).status_code == 200
    assert time.monotonic() - started < 3
    conv = conversation_for(redis_client, settings, f"slack:{TEAM_ID}:C2:1712345678.000100")
    assert conv is not None
    [queued] = queued_turns(redis_client, conv)
    [message] = json.loads(redis_client.hget(KEYS.turn(conv, queued["turn_id"]), "input") or "")
    assert message["content"] == [{"type": "input_text", "text": "and this?\n[attached: slow.png]"}]
