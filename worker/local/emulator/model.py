"""A deterministic, cheap stand-in for the model.

The reply names the turn it answers ("Reply 3 to: ...", 3 being the count of user messages in the conversation
once this input is in) so a test can tell which turn a reply belongs to just by reading it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FILLER = "and that is all there is to say about it for now thank you".split()


def text_of(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def user_turn_count(items: Iterable[dict[str, Any]]) -> int:
    return sum(1 for item in items if item.get("type") == "message" and item.get("role") == "user")


def reply_text(*, turn_number: int, user_text: str, words: int) -> str:
    head = f"Reply {turn_number} to: {user_text}".split()
    tail = [FILLER[i % len(FILLER)] for i in range(max(0, words - len(head)))]
    return " ".join(head + tail)


def chunk(text: str, chunk_chars: int) -> list[str]:
    """Split into deltas of about ``chunk_chars`` characters, keeping words whole; "".join gives ``text``."""
    if chunk_chars <= 0:
        return [text]
    pieces: list[str] = []
    current = ""
    for word in text.split(" "):
        token = word if not pieces and not current else " " + word
        if current and len(current) + len(token) > chunk_chars:
            pieces.append(current)
            current = token
        else:
            current += token
    if current:
        pieces.append(current)
    return pieces


def slices(text: str, chunk_chars: int) -> list[str]:
    """Deltas of ``chunk_chars`` characters (function arguments have no words to keep whole)."""
    if chunk_chars <= 0 or not text:
        return [text]
    return [text[i:i + chunk_chars] for i in range(0, len(text), chunk_chars)]


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))
