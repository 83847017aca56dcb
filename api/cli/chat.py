"""``parley chat``: a terminal chat that shows a reply as it is written."""

from __future__ import annotations

import sys
from typing import TextIO

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
            elif event.type == "turn.failed":
                stdout.write(f"[failed: {event.error.message}]")
            elif event.type == "turn.cancelled":
                stdout.write("[cancelled]")
        stdout.write("\n")
