"""The full chaos run of issue 4: 500 conversations x 10 turns, 3 workers SIGKILLed and restarted every 2 s,
one Redis restart, 10 % 429/5xx and 2 % dropped streams. Prints a table and writes JSON.

    python bench/chaos.py [--conversations 500] [--turns 10] [--fault-period-s 40]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from chaos import ChaosConfig, run_chaos  # noqa: E402

from parley.worker.local.emulator import EmulatorServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--fault-period-s", type=float, default=40.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "chaos.json"))
    args = parser.parse_args()
    config = ChaosConfig(conversations=args.conversations, turns=args.turns, fault_period_s=args.fault_period_s,
                         concurrency=args.concurrency)
    with EmulatorServer() as emulator:
        report = run_chaos(config, emulator)
    print(report.table())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(asdict(report), indent=2, default=str))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
