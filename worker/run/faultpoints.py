"""Crash points for the recovery tests: with ``PARLEY_FAULTPOINT=<name>`` the worker process SIGKILLs itself
when it reaches that point, exactly as an OOM kill or a node loss would; with ``<name>@<text>``, only for
turns whose input contains the text (a poison turn: it kills every worker that runs it). Inert otherwise."""

from __future__ import annotations

import os
import signal

from ..settings import get_settings

POINTS = ("claimed", "running", "response_created", "upstream_done", "finished", "tool_calls_streamed",
          "tool_ran", "tool_results_recorded", "tool_outputs_sent", "tool_final_delta")
"""The tool loop's: a response with calls has ended (not yet recorded); a tool ran (its result not yet
recorded); every result is recorded (outputs not yet sent); the outputs' response has started; a delta of the
answer after the tools. ``running``: past the start checks (dead-lettering), before upstream: where a poison
turn would crash."""


def reached(name: str, turn_input: object = None) -> None:
    point = get_settings().faultpoint
    if point is None:
        return
    wanted, _, needle = point.partition("@")
    if wanted == name and (not needle or needle in str(turn_input)):
        os.kill(os.getpid(), signal.SIGKILL)
