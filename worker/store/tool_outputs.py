"""The ingress side of bot tools: a bot's outputs for a turn that requires action (async, for the API)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio

from ..settings import Settings
from . import scripts
from .keys import Keys


@dataclass(frozen=True)
class OutputsResult:
    status: str
    """``ok`` (recorded; the turn is queued again), ``unchanged`` (already resumed or ended: nothing done),
    ``not_found``, ``unknown_call`` or ``missing_call`` (``detail`` names the call)."""
    detail: str = ""
    need_wakeup: bool = False


async def submit_tool_outputs(client: redis.asyncio.Redis, keys: Keys, settings: Settings, *, conv: str,
                              turn_id: str, outputs: dict[str, str]) -> OutputsResult:
    """Record every output of the turn's pending calls in one script (all or none), and queue the turn."""
    pairs: list[scripts.Arg] = [v for pair in outputs.items() for v in pair]
    names = [keys.turn(conv, turn_id), keys.tool_results(conv, turn_id), keys.lease(conv), keys.state(conv)]
    args: list[scripts.Arg] = [int(time.time() * 1000), settings.retention_s, *pairs]
    result = await scripts.TOOL_OUTPUTS.run_async(client, names, args)
    status, detail, *rest = result
    return OutputsResult(status=str(status), detail=str(detail), need_wakeup=bool(rest and int(rest[0])))
