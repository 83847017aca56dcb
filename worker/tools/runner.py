"""Running server tools: the calls of one round in parallel, each within its tool's timeout, with an error
output (never an exception) for a tool that raises, times out or does not exist, so the turn goes on and
the model reads what went wrong."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..log import get_logger
from .context import ToolContext
from .loop import Call, error_output
from .registry import Tool, ToolRegistry

log = get_logger(__name__)

_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="parley-tool")
"""Shared by the process's turns. A sync tool past its timeout cannot be stopped: its thread runs on while
the model reads the timeout, which is why tools get an idempotency key."""


@dataclass(frozen=True)
class Outcome:
    call_id: str
    output: str
    duration_ms: float
    error: str | None = None


def run_calls(calls: list[Call], registry: ToolRegistry, context: Callable[[Call], ToolContext],
              on_done: Callable[[Outcome], None]) -> list[Outcome]:
    """Run ``calls`` at once; ``on_done`` is called (in the caller's thread) as each one ends, in completion
    order, so its result can be recorded before any output goes upstream."""
    began = time.monotonic()
    futures = {_POOL.submit(_run_one, call, registry.tools.get(call.name), context(call)): call
               for call in calls}
    outcomes = []
    for future, call in futures.items():
        tool = registry.tools.get(call.name)
        limit = tool.timeout_s if tool else 0.0
        try:
            # The calls run at once, so each one's deadline counts from the round's start.
            outcome = future.result(timeout=max(0.0, began + limit - time.monotonic()) + 0.05)
        except FutureTimeout:
            outcome = _failed(call, f"tool {call.name!r} timed out after {limit:g} s", limit * 1000)
            metrics.TOOL_CALLS.labels(tool=call.name, outcome="timeout").inc()
        on_done(outcome)
        outcomes.append(outcome)
    return outcomes


def _failed(call: Call, message: str, duration_ms: float) -> Outcome:
    return Outcome(call_id=call.call_id, output=error_output(message), duration_ms=round(duration_ms, 1),
                   error=message)


def _run_one(call: Call, tool: Tool | None, context: ToolContext) -> Outcome:
    began = time.perf_counter()

    def took() -> float:
        return (time.perf_counter() - began) * 1000

    if tool is None:
        return _failed(call, f"no tool named {call.name!r}", took())
    try:
        arguments = json.loads(call.arguments or "{}")
        if not isinstance(arguments, dict):
            raise ValueError("the arguments are not a JSON object")
        value = _invoke(tool, arguments, context)
    except TimeoutError:
        outcome = _failed(call, f"tool {call.name!r} timed out after {tool.timeout_s:g} s", took())
    except (ValueError, ValidationError, TypeError) as exc:
        outcome = _failed(call, f"bad arguments for {call.name!r}: {exc}", took())
    except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's to read, not the turn's
        log.warning("tool_raised", tool=call.name, call_id=call.call_id, error=f"{type(exc).__name__}: {exc}")
        outcome = _failed(call, f"tool {call.name!r} raised {type(exc).__name__}: {exc}", took())
    else:
        outcome = Outcome(call_id=call.call_id, output=_as_output(value), duration_ms=round(took(), 1))
    metrics.TOOL_CALLS.labels(tool=call.name, outcome="error" if outcome.error else "ok").inc()
    metrics.TOOL_SECONDS.labels(tool=call.name).observe(outcome.duration_ms / 1000)
    return outcome


def _invoke(tool: Tool, arguments: dict[str, Any], context: ToolContext) -> Any:
    kwargs = tool.validate(arguments)
    if tool.context_param:
        kwargs[tool.context_param] = context
    if tool.is_async:
        async def bounded() -> Any:
            return await asyncio.wait_for(tool.function(**kwargs), tool.timeout_s)

        return asyncio.run(bounded())
    # A sync tool runs in this pool thread; run_calls stops waiting for it at its timeout.
    return tool.function(**kwargs)


def _as_output(value: Any) -> str:
    """A tool's return value as the output text the model reads: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json())
    return json.dumps(value, default=str)
