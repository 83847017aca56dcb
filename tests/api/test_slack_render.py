"""How Slack replies are split and paced (api/bridges/slack/render.py): pure, no I/O."""

from __future__ import annotations

import pytest

from parley.api.bridges.slack.render import due, failure_notice, retrying_status, split, take


@pytest.mark.parametrize(("text", "limit", "parts"), [
    ("short", 10, ["short"]),
    ("", 10, [""]),
    ("para one\n\npara two", 12, ["para one\n\n", "para two"]),
    ("line one\nline two", 12, ["line one\n", "line two"]),
    ("word word word", 10, ["word word ", "word"]),
    ("abcdefghijklmnop", 10, ["abcdefghij", "klmnop"]),
])
def test_split_prefers_paragraphs_then_lines_then_words(text: str, limit: int, parts: list[str]) -> None:
    """Each part at most the limit, ended at the best break it holds, and together the whole text."""
    assert split(text, limit) == parts and "".join(parts) == text


def test_take_never_takes_back_what_was_sent() -> None:
    """A streamed message with text already past the last break ends at the limit, not before what it
    holds; while it is not full, it takes the whole text."""
    assert take("aaaa bbbbb", start=0, sent=8, limit=10) == (10, False)
    assert take("aaaa bbbbbcc", start=0, sent=8, limit=10) == (10, True)
    assert take("aaaa bbbbbcc", start=0, sent=3, limit=10) == (5, True)
    assert take("xx aaaa bbbbbcc", start=3, sent=3, limit=10) == (8, True)


def test_due_paces_writes_per_message() -> None:
    """A message never written is due; one written is due again after the interval."""
    assert due(None, 5.0, 1.0) and due(4.0, 5.0, 1.0) and not due(4.5, 5.0, 1.0)


def test_failure_notice_names_the_kind_never_the_message() -> None:
    """The upstream's message (which may hold details not for the channel) is not posted."""
    notice = failure_notice({"type": "upstream_error", "message": "secret detail sk-123"})
    assert "upstream_error" in notice and "secret" not in notice
    assert "try again" in failure_notice(None)


def test_the_retrying_status_is_short_and_names_no_detail() -> None:
    """While a turn waits for a retry the status says it is still being worked on: the busy model for a rate
    limit or an open circuit, a plain "retrying" for any other cause (never the cause's own words)."""
    assert retrying_status("rate_limited") == retrying_status("circuit_open") == \
        "is still working (the model is busy)…"
    assert retrying_status("http_5xx") == retrying_status(None) == "is still working (retrying)…"
