"""The Discord bridge's pure decisions (api/bridges/discord/render.py): cutting a reply into 2,000-character
messages that stay put while it grows, the one-edit-a-second throttle, and what a turn's end shows."""

from __future__ import annotations

import json

import pytest

from parley.api.bridges.discord.render import (
    MESSAGE_LIMIT,
    THINKING,
    edit_due,
    final_text,
    retrying_notice,
    split_message,
)
from parley.worker.events.models import Event, parse_event


def _event(type_: str, **fields: object) -> Event:
    return parse_event(json.dumps({"id": "t.1", "type": type_, "conversation_id": "conv_x", "turn_id": "t",
                                   "seq": 1, "created_at": 1.0, **fields}))


def test_split_keeps_every_character_and_cuts_at_breaks() -> None:
    """Parts are at most 2,000 characters, join back to the text, cut after a line break or space where
    there is one, and a word longer than a message is cut anyway."""
    text = ("word " * 900) + "\n" + ("x" * 4500)
    parts = split_message(text)
    assert "".join(parts) == text and all(0 < len(p) <= MESSAGE_LIMIT for p in parts)
    assert parts[0].endswith(" ")
    assert split_message("") == [THINKING] and split_message("short") == ["short"]


def test_full_messages_do_not_change_while_the_reply_grows() -> None:
    """Each prefix of a growing reply cuts its full messages where the whole reply does, so a relay that
    restarts (or edits while streaming) never rewrites a message that is already full."""
    text = " ".join(f"w{n}" for n in range(2000))
    final = split_message(text)
    for end in range(2100, len(text), 700):
        parts = split_message(text[:end])
        assert parts[:-1] == final[:len(parts) - 1]


@pytest.mark.parametrize(("now", "last", "due"), [(10.0, None, 0.0), (10.0, 9.5, 0.5), (10.0, 8.0, 0.0)])
def test_an_edit_waits_out_the_second_since_the_last(now: float, last: float | None, due: float) -> None:
    """The first edit goes at once; the next one a second after the last."""
    assert edit_due(now, last) == pytest.approx(due)


def test_the_end_of_a_turn_always_shows_something() -> None:
    """Completed: the output; failed: a short notice; merged, superseded, interrupted: a note pointing to
    the next reply (the deferred "thinking…" never stays)."""
    assert final_text(_event("turn.completed", output_text="Hi!"), "Hi") == "Hi!"
    failed = final_text(_event("turn.failed", error={"type": "upstream", "message": "boom"}), "")
    assert "failed" in failed and "boom" in failed
    for type_ in ("turn.merged", "turn.superseded", "turn.interrupted"):
        fields = {"answered_by": "t2", **({"into": "t2"} if type_ == "turn.merged" else {})}
        assert "next reply" in final_text(_event(type_, **fields), "")


def test_the_retrying_notice_is_short_and_names_no_detail() -> None:
    """While a turn waits for a retry the reply says it is still being worked on, well within one message:
    the busy model for a rate limit or an open circuit, a plain "retrying" for any other cause."""
    assert retrying_notice("rate_limited") == retrying_notice("circuit_open") == \
        "Still working… (the model is busy, retrying)"
    assert retrying_notice("timeout") == retrying_notice(None) == "Still working… (retrying)"
