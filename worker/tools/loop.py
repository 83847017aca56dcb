"""The tool loop's decisions, pure (no I/O): which calls a response asked for, what the next request sends,
and, after a crash or an aborted stream, what the conversation's items say was already stored.

A turn with tools is a series of rounds on one conversation: round 0 sends the user's input; a response that
asks for function calls is answered by the next round, whose input is one ``function_call_output`` for every
call of the round before (all in one request: split outputs break the loop); a response without calls ends
the turn. Resending a stored item is a 400 (``Duplicate item found``), a call left without an output breaks
every later turn of the conversation (``No tool output found``), and an output for a call that was never
stored is a 400 too, so after any doubt the items decide, not what this process believes it sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Runs = Literal["server", "bot"]


@dataclass(frozen=True)
class Call:
    call_id: str
    name: str
    arguments: str
    """The model's JSON text, as it sent it."""
    round: int
    runs: Runs
    item_id: str | None = None

    def record(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "name": self.name, "arguments": self.arguments, "round": self.round,
                "runs": self.runs, **({"item_id": self.item_id} if self.item_id else {})}

    @classmethod
    def of(cls, record: dict[str, Any]) -> Call:
        return cls(call_id=record["call_id"], name=record["name"], arguments=record["arguments"],
                   round=int(record["round"]), runs=record["runs"], item_id=record.get("item_id"))


def calls_in(output: list[dict[str, Any]], *, round_: int, server_tools: set[str],
             bot_tools: set[str] = frozenset()) -> list[Call]:  # type: ignore[assignment]
    """The function calls of a response's output, in order. A tool of the turn's own that no server tool
    implements runs on the bot; any other name runs on the server, where a name nobody implements gets an
    error output (the model made it up)."""
    return [Call(call_id=item["call_id"], name=item["name"], arguments=item.get("arguments") or "{}",
                 round=round_, runs="bot" if item["name"] in bot_tools - server_tools else "server",
                 item_id=item.get("id"))
            for item in output if item.get("type") == "function_call"]


def outputs_input(calls: list[Call], results: dict[str, str]) -> list[dict[str, Any]]:
    """The next request's input: an output for every call, in the order of the calls."""
    return [{"type": "function_call_output", "call_id": c.call_id, "output": results[c.call_id]}
            for c in calls]


def error_output(message: str) -> str:
    """What the model reads for a call that could not be answered (a tool that raised, timed out, does not
    exist, or a bot that never answered)."""
    return json.dumps({"error": message})


@dataclass
class ToolState:
    """What the turn record says of the loop: every call so far, their recorded results, and the id of each
    round's response (index = round) once known."""

    calls: list[Call] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)
    response_ids: list[str] = field(default_factory=list)

    @property
    def last_round(self) -> int:
        return max((c.round for c in self.calls), default=-1)

    def pending(self) -> list[Call]:
        """The calls of the last round: what the next request answers (empty before the first calls)."""
        last = self.last_round
        return [c for c in self.calls if c.round == last] if last >= 0 else []

    def missing(self) -> list[Call]:
        """Pending calls with no recorded result yet."""
        return [c for c in self.pending() if c.call_id not in self.results]


# --- reading the conversation after a doubt ---------------------------------------------------------------


@dataclass(frozen=True)
class NotSent:
    """The turn's input is not in the conversation: nothing of this turn was stored."""


@dataclass(frozen=True)
class StillRunning:
    """Stored input but no answer yet: a response is still running (or appends at its end)."""


@dataclass(frozen=True)
class Pending:
    """Calls stored without outputs: they need outputs, all in the next request."""

    calls: list[dict[str, Any]]
    """The stored ``function_call`` items lacking an output, in order."""
    rounds_stored: int
    """How many rounds of calls the conversation holds for this turn."""


@dataclass(frozen=True)
class Answered:
    text: str
    last_item_id: str


ItemsView = NotSent | StillRunning | Pending | Answered


def read_items(items: list[dict[str, Any]], user_text: str) -> ItemsView:
    """What the conversation's items after the checkpoint say about this turn. ``items`` are plain dicts in
    stored order; the turn begins at the first user message with ``user_text``."""
    start = next((i for i, item in enumerate(items) if _role(item) == "user" and _text(item) == user_text),
                 None)
    if start is None:
        return NotSent()
    calls: dict[str, dict[str, Any]] = {}
    answered: set[str] = set()
    rounds, last_type, last_text, in_round = 0, "user", "", False
    for item in items[start + 1:]:
        kind = item.get("type")
        if kind == "function_call":
            if not in_round:
                rounds, in_round = rounds + 1, True
            calls[item["call_id"]] = item
        elif kind == "function_call_output":
            answered.add(item["call_id"])
            in_round = False
        elif _role(item) == "assistant":
            last_text = _text(item)
            in_round = False
        last_type = "assistant" if _role(item) == "assistant" else str(kind)
    unanswered = [item for call_id, item in calls.items() if call_id not in answered]
    if unanswered:
        return Pending(calls=unanswered, rounds_stored=rounds)
    if last_type == "assistant":
        return Answered(text=last_text, last_item_id=str(items[-1]["id"]))
    return StillRunning()


def _role(item: dict[str, Any]) -> str | None:
    return item.get("role") if item.get("type", "message") == "message" else None


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))
