"""JSON objects shaped as OpenAI returns them (see openai-api.md §1-§4)."""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

JSON = dict[str, Any]


def new_id(prefix: str) -> str:
    # Real ids are a prefix plus ~48 hex characters; the SDK does not check the format.
    return f"{prefix}_{secrets.token_hex(24)}"


def new_call_id() -> str:
    # As recorded: call_ + 24 letters and digits (tools-and-platforms.md §1.1).
    return "call_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


def now_s() -> int:
    return int(time.time())


def conversation(conv_id: str, created_at: int, metadata: dict[str, str]) -> JSON:
    return {"id": conv_id, "object": "conversation", "created_at": created_at, "metadata": metadata}


def conversation_deleted(conv_id: str) -> JSON:
    return {"id": conv_id, "object": "conversation.deleted", "deleted": True}


def item_list(items: list[JSON], has_more: bool) -> JSON:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def output_text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def assistant_message(item_id: str, text: str, status: str = "completed") -> JSON:
    content = [output_text_part(text)] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def function_call(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> JSON:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def usage(input_tokens: int, output_tokens: int) -> JSON:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def response(
    *,
    response_id: str,
    created_at: int,
    status: str,
    model: str,
    instructions: str | None,
    metadata: dict[str, str],
    conversation_id: str | None,
    background: bool,
    store: bool,
    tools: list[JSON] | None = None,
    tool_choice: Any = "auto",
    parallel_tool_calls: bool = True,
    text: JSON | None = None,
) -> JSON:
    """A Response with every key the spec marks required; output and usage are filled in later. The tool and
    text options are echoed as the request gave them (options.py fills in their defaults)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": None,
        "background": background,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": parallel_tool_calls,
        "previous_response_id": None,
        "conversation": {"id": conversation_id} if conversation_id else None,
        "reasoning": {"effort": None, "summary": None},
        "store": store,
        "temperature": 1.0,
        "text": text or {"format": {"type": "text"}},
        "tool_choice": tool_choice,
        "tools": tools or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "metadata": metadata,
    }


def error_body(message: str, *, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> JSON:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
