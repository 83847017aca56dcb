"""A worker's CPU priority below the API's when they share a host (``PARLEY_WORKER_NICE``).

Two weights decide who runs when the CPUs are all busy: a thread's nice value against the others of its
group, and, where the kernel groups processes by session (autogroup, the default on many distributions), the
session's against other sessions. A worker spawned in a session of its own (``parley up``, a process
manager, the tests) competes with the API as a whole group, so its own nice value alone would change nothing.
Lower weights only matter under contention: an idle CPU is still used by the workers at once.
"""

from __future__ import annotations

import os
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(nice: int) -> list[str]:
    """Add ``nice`` to this thread's niceness (threads started later inherit it) and, when this process leads
    its session, to the session's autogroup (never a session it shares with others, such as a shell's).
    Returns what was changed, for the startup line."""
    if nice <= 0:
        return []
    os.nice(nice)
    changed = [f"nice +{nice}"]
    if os.getsid(0) == os.getpid() and AUTOGROUP.exists():
        try:
            AUTOGROUP.write_text(f"{nice}\n")
            changed.append("autogroup")
        except OSError:  # a kernel or sandbox that refuses it: the thread's nice value still applies
            pass
    return changed
