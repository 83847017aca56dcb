"""How a turn's reply is shown on Discord, decided without I/O: the text cut into messages of at most 2,000
characters, when the next edit may go out, and the short notes for turns that end without a reply."""

from __future__ import annotations

from parley.worker.events.models import Event

MESSAGE_LIMIT = 2000
"""Discord's limit on a message's ``content``."""

EDIT_INTERVAL_S = 1.0
"""At most one edit per message per second while the reply is written: Discord's per-route limits are not
published, and a faster stream of edits mostly buys 429s (llmcord settles on the same second)."""

THINKING = "…"
"""What the reply shows before its first words (Discord refuses an empty ``content``)."""

BUSY_CAUSES = frozenset({"rate_limited", "circuit_open"})
"""``turn.retrying`` causes that mean the model is busy rather than failing."""

NOTES = {
    "turn.merged": "(answered in the next reply)",
    "turn.superseded": "(answered in the next reply)",
    "turn.interrupted": "(answered in the next reply)",
    "turn.cancelled": "(cancelled)",
}


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``text`` as consecutive messages of at most ``limit`` characters, cut at the last line break (else
    space) of each full window. A message's cut depends only on the text up to its window's end, so while the
    reply grows the messages already full never change: a relay that restarts cuts them the same way."""
    if not text:
        return [THINKING]
    parts: list[str] = []
    start = 0
    while len(text) - start > limit:
        window = text[start:start + limit]
        cut = window.rfind("\n")
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:  # one very long word: cut it anywhere rather than send a tiny message
            cut = limit
        else:
            cut += 1  # the break stays at the end of its message
        parts.append(text[start:start + cut])
        start += cut
    parts.append(text[start:])
    # Discord refuses a message of whitespace only; a part that is just the break after the last cut waits.
    return [part if part.strip() else THINKING for part in parts]


def edit_due(now_s: float, last_edit_s: float | None, *, interval_s: float = EDIT_INTERVAL_S) -> float:
    """Seconds to wait before the next edit of a message last edited at ``last_edit_s`` (0: now)."""
    if last_edit_s is None:
        return 0.0
    return max(0.0, last_edit_s + interval_s - now_s)


def final_text(event: Event, written: str) -> str:
    """What the reply finally shows for the turn's terminal ``event``: the whole output of a completed turn,
    a short notice for a failed one, a note for one answered elsewhere or cancelled (with what was written
    before it, if anything)."""
    if event.type == "turn.completed":
        return getattr(event, "output_text", "") or written or "(no reply)"
    if event.type == "turn.failed":
        error = getattr(event, "error", None)
        says = getattr(error, "message", "") or "the model did not answer"
        return f"{written}\n\n⚠️ Sorry, this reply failed: {says[:300]}".lstrip()
    note = NOTES.get(event.type, "(no reply)")
    return f"{written}\n\n{note}".lstrip() if written else note


def expired_notice(has_bot_token: bool) -> str:
    """Appended to the reply when Discord's 15 minutes run out before the turn ends."""
    if has_bot_token:
        return "\n\n(this takes longer than Discord allows for one reply; the rest follows in the channel)"
    return "\n\n(this takes longer than Discord allows for one reply; it cannot be shown here)"


def retrying_notice(cause: str | None) -> str:
    """What the reply shows while the worker waits to retry the turn (``turn.retrying``) and nothing of its
    text is there yet: short, and saying why only in general terms."""
    why = "the model is busy, retrying" if cause in BUSY_CAUSES else "retrying"
    return f"Still working… ({why})"
