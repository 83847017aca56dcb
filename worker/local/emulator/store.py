"""The emulator's in-memory state: conversations, their items, responses, locks and the request log.

Handlers run on one asyncio loop; tests read the state from other threads, so mutations and the inspection
snapshots take ``mutex``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import model, objects
from .index import ItemIndex
from .objects import JSON


class ApiError(Exception):
    """An OpenAI-style error response."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = objects.error_body(message, type_=type_, param=param, code=code)
        self.headers = headers or {}


LOCKED_MESSAGE = "Another process is currently operating on this conversation. Please retry in a few seconds."


@dataclass
class Conversation:
    id: str
    created_at: int
    metadata: dict[str, str]
    items: list[JSON] = field(default_factory=list)
    user_turns: int = 0
    """User messages among ``items``, kept as they change: counting them per reply made a long conversation's
    replies O(items) on the emulator's one event loop, stalling every other conversation."""

    def __post_init__(self) -> None:
        # Not a field: derived from the items, so neither saved nor compared.
        self.index = ItemIndex(self.items)

    def add(self, items: list[JSON]) -> None:
        self.items.extend(items)
        self.user_turns += model.user_turn_count(items)
        self.index.add(items)


@dataclass
class RequestRecord:
    """One ``POST /responses`` as the emulator saw it; ``ended_at`` is set when it reaches a final state."""

    response_id: str | None
    conversation_id: str | None
    input_texts: list[str]
    stream: bool
    background: bool
    fault: str | None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    status: str = "in_progress"
    tools: list[str] = field(default_factory=list)
    """Names of the function tools offered."""
    other_tools: list[str] = field(default_factory=list)
    """Types of the other tools offered (hosted ones: accepted, never called)."""
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    text_format: JSON = field(default_factory=lambda: {"type": "text"})
    function_call_outputs: list[JSON] = field(default_factory=list)
    """``{"call_id", "output"}`` of each function_call_output in the input."""
    function_calls: list[JSON] = field(default_factory=list)
    """``{"name", "call_id", "arguments"}`` of each call the response made."""
    params: JSON = field(default_factory=dict)
    """The body's fields other than ``input`` (model, tools, text, ...), as sent."""


@dataclass
class Store:
    conversations: dict[str, Conversation] = field(default_factory=dict)
    locks: dict[str, str] = field(default_factory=dict)
    """conversation id -> id of the response in progress on it."""
    requests: list[RequestRecord] = field(default_factory=list)
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    """(conversation id, response id in progress) for each request that arrived while another was running."""
    peak_locked: int = 0
    """The most conversations that had a response in progress at once: how parallel the callers were."""
    mutex: threading.Lock = field(default_factory=threading.Lock)

    def conversation(self, conv_id: str) -> Conversation:
        conv = self.conversations.get(conv_id)
        if conv is None:
            raise ApiError(404, f"Conversation with id '{conv_id}' not found.", param="conversation_id")
        return conv

    def create_conversation(self, metadata: dict[str, str], items: list[JSON]) -> Conversation:
        conv = Conversation(id=objects.new_id("conv"), created_at=objects.now_s(), metadata=metadata)
        with self.mutex:
            conv.add(items)
            self.conversations[conv.id] = conv
        return conv

    def append_items(self, conv: Conversation, items: list[JSON]) -> None:
        with self.mutex:
            conv.add(items)

    def delete_item(self, conv: Conversation, item_id: str) -> None:
        with self.mutex:
            for index, item in enumerate(conv.items):
                if item["id"] == item_id:
                    del conv.items[index]
                    conv.user_turns -= model.user_turn_count([item])
                    conv.index = ItemIndex(conv.items)
                    return
        raise ApiError(404, f"Item with id '{item_id}' not found.", param="item_id")

    def lock(self, conv_id: str, response_id: str) -> None:
        with self.mutex:
            holder = self.locks.get(conv_id)
            if holder is not None:
                self.overlaps.append((conv_id, holder))
                raise ApiError(400, LOCKED_MESSAGE, param="conversation", code="conversation_locked")
            self.locks[conv_id] = response_id
            self.peak_locked = max(self.peak_locked, len(self.locks))

    def unlock(self, conv_id: str, response_id: str) -> None:
        with self.mutex:
            if self.locks.get(conv_id) == response_id:
                del self.locks[conv_id]

    def log_request(self, record: RequestRecord) -> None:
        with self.mutex:
            self.requests.append(record)

    # --- inspection (tests and the /_emulator debug routes) ------------------------------------------

    def history(self, conv_id: str) -> tuple[int, str]:
        """How many user messages the conversation has, and the text of the last one."""
        with self.mutex:
            conv = self.conversations.get(conv_id)
            if conv is None:
                return 0, ""
            last = next((model.text_of(i) for i in reversed(conv.items) if i.get("role") == "user"), "")
            return conv.user_turns, last

    def snapshot_items(self, conv_id: str) -> list[JSON]:
        with self.mutex:
            conv = self.conversations.get(conv_id)
            return [dict(item) for item in conv.items] if conv else []

    def snapshot_requests(self) -> list[RequestRecord]:
        with self.mutex:
            return list(self.requests)

    def overlap_count(self) -> int:
        with self.mutex:
            return len(self.overlaps)

    def reset(self) -> None:
        with self.mutex:
            self.conversations.clear()
            self.locks.clear()
            self.requests.clear()
            self.overlaps.clear()
            self.peak_locked = 0

    def save(self, path: Path) -> None:
        """Write the conversations and their items to ``path`` (``parley up`` keeps them across restarts)."""
        with self.mutex:
            state = [asdict(conv) for conv in self.conversations.values()]
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"conversations": state}))
        temporary.replace(path)

    def load(self, path: Path) -> None:
        """Read what ``save`` wrote; a missing file is an empty store."""
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return
        with self.mutex:
            for conv in state["conversations"]:
                self.conversations[conv["id"]] = Conversation(**conv)

    def summary(self) -> dict[str, Any]:
        with self.mutex:
            return {
                "conversations": len(self.conversations),
                "requests": len(self.requests),
                "overlaps": len(self.overlaps),
                "peak_locked": self.peak_locked,
                "locked": dict(self.locks),
            }
