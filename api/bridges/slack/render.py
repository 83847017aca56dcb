"""How a reply goes out on Slack: where a long one is split into messages, when the next write is due, what a
failed turn says. Pure functions; the relay does the calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MESSAGE_MAX_CHARS = 12_000
"""Per message: ``markdown_text`` is limited to 12,000 characters per streaming call (tools-and-platforms.md
§3.1), and a message at most that long also fits ``chat.postMessage``/``chat.update`` text (40,000)."""
STREAM_INTERVAL_S = 0.5
"""Between two ``chat.appendStream`` of one message (Tier 4: 100+ a minute per workspace)."""
UPDATE_INTERVAL_S = 1.0
"""Between two ``chat.update`` of one message (Tier 3), the brief's once a second."""
THINKING = "is thinking…"
"""The thread's status line while a turn runs (Slack shows it after the app's name)."""
BUSY_CAUSES = frozenset({"rate_limited", "circuit_open"})
"""``turn.retrying`` causes that mean the model is busy rather than failing."""
BREAKS = ("\n\n", "\n", " ")
"""Where a message ends, best first: a paragraph, a line, a word; else at the limit."""


def take(text: str, *, start: int, sent: int, limit: int = MESSAGE_MAX_CHARS) -> tuple[int, bool]:
    """How far the message that holds ``text[start:]`` goes: ``(end, full)``. ``text[start:sent]`` is already
    in it and stays (a streamed message cannot take text back), so a full message ends at the last break
    after ``sent`` within the limit, else at the limit. Applied to a growing text, a message ends once, where
    it is known to be full; the next one starts at ``end``."""
    if len(text) - start <= limit:
        return len(text), False
    window_end = start + limit
    for mark in BREAKS:
        at = text.rfind(mark, sent, window_end)
        if at > start:
            return at + len(mark), True
    return window_end, True


def split(text: str, limit: int = MESSAGE_MAX_CHARS) -> list[str]:
    """The whole text as messages, each at most ``limit`` long, split as :func:`take` does."""
    parts, start = [], 0
    while True:
        end, full = take(text, start=start, sent=start, limit=limit)
        parts.append(text[start:end])
        if not full:
            return parts
        start = end


def due(last_at: float | None, now: float, interval_s: float) -> bool:
    """Whether a message last written at ``last_at`` (None: never) may be written again at ``now``."""
    return last_at is None or now - last_at >= interval_s


def failure_notice(error: Mapping[str, Any] | None) -> str:
    """What a failed turn posts: short, with the error's type but never its message (it can hold upstream
    details that are not for the channel)."""
    kind = (error or {}).get("type") or (error or {}).get("code")
    suffix = f" ({kind})" if kind else ""
    return f":warning: Sorry, I could not answer this{suffix}. Please try again."


def retrying_status(cause: str | None) -> str:
    """The status line while the worker waits to retry the turn (``turn.retrying``): short, and saying why
    only in general terms (the busy model, or trouble reaching it)."""
    why = "the model is busy" if cause in BUSY_CAUSES else "retrying"
    return f"is still working ({why})…"
