"""Crash points for the recovery tests: with ``PARLEY_FAULTPOINT=<name>`` the worker process SIGKILLs itself
when it reaches that point, exactly as an OOM kill or a node loss would. Inert otherwise."""

from __future__ import annotations

import os
import signal

from ..settings import get_settings

POINTS = ("claimed", "response_created", "upstream_done", "finished")


def reached(name: str) -> None:
    if get_settings().faultpoint == name:
        os.kill(os.getpid(), signal.SIGKILL)
