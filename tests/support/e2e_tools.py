"""Server tools for the end-to-end tool tests, loaded by worker processes with ``PARLEY_TOOLS=e2e_tools``
(``PYTHONPATH`` includes this folder). Every run appends a line to ``$E2E_TOOL_LOG``, so a test can count how
often each call ran across processes, killed ones included."""

from __future__ import annotations

import json
import os
import time

from parley import ToolContext, tool


def _log(name: str, ctx: ToolContext) -> None:
    with open(os.environ["E2E_TOOL_LOG"], "a") as log:
        log.write(json.dumps({"tool": name, "call_id": ctx.call_id, "key": ctx.idempotency_key}) + "\n")


@tool(timeout_s=5)
def clock(ctx: ToolContext, tz: str = "UTC") -> str:
    """The time in a zone."""
    _log("clock", ctx)
    return f"12:00 {tz}"


@tool(timeout_s=5)
def add(a: int, b: int, ctx: ToolContext) -> int:
    """a + b."""
    _log("add", ctx)
    time.sleep(0.05)
    return a + b


@tool(timeout_s=10)
def nap(seconds: float, ctx: ToolContext) -> str:
    """Sleep for a while (a slow tool, for the interrupt tests)."""
    _log("nap", ctx)
    time.sleep(seconds)
    return "rested"
