"""``parley chat``: a terminal chat that shows a reply as it is written."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from parley.worker.events.models import Event

from ..client import ParleyAPIError, ParleyClient

PROMPT = "you> "


def enable_line_editing(stdin: TextIO) -> bool:
    """Arrow keys and history for ``input``-style reading, when a person types at a terminal."""
    if not stdin.isatty():
        return False
    import readline  # noqa: F401  (importing it is what turns line editing on)

    return True


def chat(client: ParleyClient, *, key: str, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    conversation = client.create_conversation(key=key)
    stdout.write(f"conversation {conversation.id} (Ctrl-D to leave)\n")
    while True:
        stdout.write(PROMPT)
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        try:
            turn = client.send_turn(conversation.id, text)
        except ParleyAPIError as exc:
            stdout.write(f"[{exc}]\n")
            continue
        stdout.write("bot> ")
        for event in client.stream_turn(turn.id):
            if event.type == "response.delta":
                stdout.write(event.delta)
                stdout.flush()
            elif event.type == "turn.retrying":
                stdout.write(f"[still working: {event.cause}, retrying]")
                stdout.flush()
            elif event.type == "tool.called" and event.runs == "server":
                stdout.write(f"[{event.name}({event.arguments})]")
                stdout.flush()
            elif event.type == "turn.requires_action":
                # The bot is you: answer each call the model made of a tool of the turn.
                outputs = _ask_outputs(event.required_action, stdin, stdout)
                client.submit_tool_outputs(turn.id, outputs)
                stdout.write("bot> ")
            elif (ending := _ending(event)) is not None:
                stdout.write(ending)
        stdout.write("\n")


def _ending(event: Event) -> str | None:
    """What is shown for a turn that ends without a reply of its own (``None``: any other event)."""
    if event.type == "turn.failed":
        return f"[failed: {event.error.message}]"
    if event.type == "turn.cancelled":
        return "[cancelled]"
    if event.type == "turn.merged":
        return f"[merged into {event.into}]"
    if event.type == "turn.superseded":
        return f"[superseded by {event.answered_by}]"
    if event.type == "turn.interrupted":
        return f"[interrupted; answered by {event.answered_by}]"
    return None


def _ask_outputs(action: dict[str, Any], stdin: TextIO, stdout: TextIO) -> dict[str, str]:
    outputs = {}
    for call in action.get("tool_calls", []):
        stdout.write(f"\n[tool {call['name']}({call['arguments']})] output> ")
        stdout.flush()
        outputs[call["call_id"]] = stdin.readline().strip()
    return outputs
