"""An index of a conversation's items for the function-call rules (see tools.py)."""

from __future__ import annotations

from collections.abc import Iterable

from .objects import JSON


class ItemIndex:
    """What the call rules need from a conversation's items, kept up to date as items are added (O(1) each):
    a long conversation must not make every request scan all its items."""

    def __init__(self, items: Iterable[JSON] = ()) -> None:
        self.ids: set[str] = set()
        self.call_names: dict[str, str] = {}
        """call id -> function name, for every function_call item."""
        self.pending: dict[str, None] = {}
        """Call ids without an output yet, in call order."""
        self.last_user_text = ""
        self.rounds = 0
        """Batches of function calls since the last user message."""
        self._in_batch = False
        self.add(items)

    def add(self, items: Iterable[JSON]) -> None:
        for item in items:
            self.ids.add(item["id"])
            self.rounds, self._in_batch = _count_round(self.rounds, self._in_batch, item)
            if item.get("type") == "function_call":
                self.call_names[item["call_id"]] = item["name"]
                self.pending[item["call_id"]] = None
            elif item.get("type") == "function_call_output":
                self.pending.pop(item["call_id"], None)
            elif item.get("role") == "user":
                self.last_user_text = text_of(item.get("content"))

    def rounds_after(self, items: Iterable[JSON]) -> int:
        rounds, in_batch = self.rounds, self._in_batch
        for item in items:
            rounds, in_batch = _count_round(rounds, in_batch, item)
        return rounds


def _count_round(rounds: int, in_batch: bool, item: JSON) -> tuple[int, bool]:
    if item.get("role") == "user":
        return 0, False
    if item.get("type") == "function_call":
        return (rounds if in_batch else rounds + 1), True
    return rounds, False


def text_of(content: object) -> str:
    """The text of a message's content or of a function_call_output's output (a string or parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""
