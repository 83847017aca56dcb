"""Which Slack events become turns (api/bridges/slack/decide.py), on real-shaped events: pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from parley.api.bridges.slack.decide import strip_mention, turn_for_event

BOT = "UBOT"
BASE = {"channel": "C2", "user": "U7", "ts": "1712345678.000100", "team": "T1",
        "event_ts": "1712345678.000100"}
MENTION = BASE | {"type": "app_mention", "text": "<@UBOT> summarise this"}
REPLY = BASE | {"type": "message", "channel_type": "channel", "text": "and then?", "ts": "1712345679.000200",
                "thread_ts": "1712345678.000100"}
DM = BASE | {"type": "message", "channel_type": "im", "channel": "D5", "text": "hello"}

CASES: list[tuple[str, dict[str, Any], tuple[str, str, bool] | None]] = [
    ("mention starts a thread", MENTION, ("summarise this", "slack:T1:C2:1712345678.000100", False)),
    ("mention in a thread", MENTION | {"thread_ts": "1712345000.000001"},
     ("summarise this", "slack:T1:C2:1712345000.000001", False)),
    ("mention with a label", MENTION | {"text": "hey <@UBOT|parley>  there"}, ("hey there", "slack:T1:C2:"
                                                                             "1712345678.000100", False)),
    ("mention and nothing else", MENTION | {"text": "<@UBOT>"}, None),
    ("dm", DM, ("hello", "slack:T1:D5:1712345678.000100", False)),
    ("dm in a thread", DM | {"thread_ts": "1712345000.000001", "ts": "1712345679.000200"},
     ("hello", "slack:T1:D5:1712345000.000001", False)),
    ("dm with a file", DM | {"subtype": "file_share"}, ("hello", "slack:T1:D5:1712345678.000100", False)),
    ("thread reply in a channel", REPLY, ("and then?", "slack:T1:C2:1712345678.000100", True)),
    ("thread reply that mentions the bot (app_mention answers it)", REPLY | {"text": "<@UBOT> and then?"},
     None),
    ("top-level channel message", BASE | {"type": "message", "channel_type": "channel", "text": "hi all"},
     None),
    ("thread root as a message", REPLY | {"ts": "1712345678.000100"}, None),
    ("the bot's own message", DM | {"user": BOT, "bot_id": "BBOT"}, None),
    ("the bot's own message without bot_id", DM | {"user": BOT}, None),
    ("another bot", DM | {"subtype": "bot_message", "bot_id": "B9", "username": "ci"}, None),
    ("another bot with a user", DM | {"bot_id": "B9", "bot_profile": {"id": "B9"}}, None),
    ("an edit", {"type": "message", "subtype": "message_changed", "channel": "D5", "channel_type": "im",
                 "ts": "1712345680.000300", "message": {"user": "U7", "text": "edited"}}, None),
    ("a delete", {"type": "message", "subtype": "message_deleted", "channel": "D5", "channel_type": "im",
                  "ts": "1712345680.000300", "deleted_ts": "1712345678.000100"}, None),
    ("a join", REPLY | {"subtype": "channel_join", "text": "<@U7> has joined the channel"}, None),
    ("a topic change", REPLY | {"subtype": "channel_topic"}, None),
    ("another event type", {"type": "reaction_added", "user": "U7", "item": {}}, None),
]


@pytest.mark.parametrize(("event", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_turn_for_event(event: dict[str, Any], expected: tuple[str, str, bool] | None) -> None:
    """Each event gives the turn (text, conversation key, whether the thread must be known) or none."""
    turn = turn_for_event(event, bot_user_id=BOT, team_id="T1")
    assert (None if turn is None else (turn.text, turn.key, turn.only_if_followed)) == expected


def test_the_apps_workspace_names_the_conversation_and_the_users_receives_the_stream() -> None:
    """In a Slack Connect channel the user's workspace differs from the app's: the key uses the app's (the
    envelope's team_id), the streaming recipient the user's."""
    turn = turn_for_event(MENTION | {"team": "T9", "user_team": "T9"}, bot_user_id=BOT, team_id="T1")
    assert turn is not None and turn.key.startswith("slack:T1:") and turn.metadata["user_team"] == "T9"


def test_strip_mention_keeps_other_mentions() -> None:
    """Only the bot's mention goes; other users' stay, as Slack wrote them."""
    assert strip_mention("<@UBOT> ask <@U7> about it", BOT) == "ask <@U7> about it"
