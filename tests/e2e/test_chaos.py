"""The chaos run at a CI-sized scale; `python bench/chaos.py` runs the full 500 x 10 one."""

from __future__ import annotations

import pytest
from chaos import ChaosConfig, run_chaos

from parley.worker.local.emulator import EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def test_chaos_reduced(emulator: EmulatorServer) -> None:
    """Workers SIGKILLed every 2 s, a Redis restart, 10 % 429/5xx and 2 % dropped streams: nothing lost,
    duplicated, reordered or overlapping; everything terminal within 60 s after the faults stop."""
    report = run_chaos(ChaosConfig(conversations=60, turns=5, fault_period_s=12.0, concurrency=20), emulator)
    print(report.table())
    assert report.accepted_turns == 300
    assert report.worker_kills >= 4 and report.redis_restarts == 1
    assert sum(report.injected_faults.values()) > 0
    assert report.clean, report.table()
    assert report.seconds_to_terminal_after_faults < 60
