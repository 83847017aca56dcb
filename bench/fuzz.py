"""The big schemathesis run: every operation of the OpenAPI document, with valid and with invalid requests,
``--examples`` of each per operation (default 1,000), against the API on uvicorn with the embedded Redis and
the emulator (tests/api/test_schemathesis.py, which CI runs at 25). Prints a table and writes JSON.

    python bench/fuzz.py [--examples 1000] [--out bench/results/fuzz.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASE = re.compile(r"\[(?P<method>\w+) (?P<path>\S+) (?P<mode>\w+)\]$")


def rows(junit: Path) -> list[dict[str, object]]:
    """One row per operation and mode from pytest's JUnit XML: examples run, seconds, passed or not."""
    found = []
    for case in ET.parse(junit).iter("testcase"):
        match = CASE.search(case.get("name", ""))
        if match is None:
            continue
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        failed = any(case.find(outcome) is not None for outcome in ("failure", "error", "skipped"))
        found.append({**match.groupdict(), "examples": int(properties.get("examples") or 0),
                      "seconds": round(float(case.get("time", 0)), 1), "passed": not failed})
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz.json"))
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    junit = out.with_suffix(".xml")
    started = time.monotonic()
    code = subprocess.call(
        [sys.executable, "-m", "pytest", "tests/api/test_schemathesis.py", "-m", "fuzz", "-q", "-n0", "-p",
         "no:cacheprovider", "-o", "junit_family=xunit1", f"--junitxml={junit}"],
        cwd=ROOT, env={**os.environ, "PARLEY_FUZZ_EXAMPLES": str(args.examples)})
    duration_s = round(time.monotonic() - started, 1)
    table = rows(junit)
    failures = sum(1 for row in table if not row["passed"])
    for row in table:
        print(f"{row['method'].upper():6} {row['path']:48} {row['mode']:8} {row['examples']:>6} "
              f"{row['seconds']:>7} s  {'ok' if row['passed'] else 'FAILED'}")
    summary = {"examples_per_operation_and_mode": args.examples,
               "operations": len({(row["method"], row["path"]) for row in table}), "runs": len(table),
               "examples": sum(int(row["examples"]) for row in table),
               "failures": failures, "duration_s": duration_s, "pytest_exit": code, "rows": table}
    print({k: v for k, v in summary.items() if k != "rows"})
    out.write_text(json.dumps(summary, indent=2))
    return 0 if code == 0 and failures == 0 and table else 1


if __name__ == "__main__":
    raise SystemExit(main())
