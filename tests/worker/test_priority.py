"""PARLEY_WORKER_NICE lowers a worker's CPU priority: its own nice value, and its session's autogroup only when
the worker leads that session (never a shell's, which the API may share)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import json, os, sys
from parley.worker.run.priority import lower_priority
changed = lower_priority(int(sys.argv[1]))
group = open("/proc/self/autogroup").read().split() if os.path.exists("/proc/self/autogroup") else []
print(json.dumps({"changed": changed, "nice": os.nice(0), "group_nice": group[-1] if group else None}))
"""


def run_child(nice: int, *, own_session: bool) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(nice)], capture_output=True, text=True, timeout=30,
                          start_new_session=own_session, check=True)
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="this kernel has no autogroups")
def test_a_session_leader_lowers_its_nice_value_and_its_autogroup() -> None:
    """In a session of its own (as parley up and the tests spawn workers), both weights drop."""
    result = run_child(7, own_session=True)
    assert result["nice"] == os.nice(0) + 7 and result["changed"][0] == "nice +7"
    if "autogroup" in result["changed"]:  # a sandbox may refuse the write; the nice value still holds
        assert result["group_nice"] == "7"


def test_a_worker_in_a_shared_session_leaves_the_session_alone() -> None:
    """Started from a shell's session, only the worker's own threads are lowered."""
    result = run_child(4, own_session=False)
    assert result["nice"] == os.nice(0) + 4 and result["changed"] == ["nice +4"]


def test_zero_changes_nothing() -> None:
    """The default (0) leaves the worker's priority as it was started."""
    result = run_child(0, own_session=True)
    assert result["nice"] == os.nice(0) and result["changed"] == []
