"""The server tool of scenario (10), loaded by the measured worker with ``PARLEY_TOOLS=bench_tools``: as cheap
as a tool can be, so the figure is parley's cost of a round and not the tool's (the end-to-end tests' tools
append each run to a log file, which costs as much CPU as a small record)."""

from __future__ import annotations

from parley import tool


@tool(timeout_s=5)
def add(a: int, b: int) -> int:
    """a + b."""
    return a + b
