"""The client stands alone: its tests (tests/client) run in a process where importing Celery, kombu, Redis or
the OpenAI SDK fails, against a real parley started here (API on uvicorn, Celery worker processes, the
embedded Redis and the emulator)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from stack import workers

from parley.worker.local.emulator import EmulatorServer
from parley.worker.settings import Settings

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]
API_KEY = "k-client-tests"


@pytest.fixture(name="settings")
def _client_settings(settings: Settings) -> Settings:
    # A key, so the client's 401 can be tested; a mailbox cap of 2, so its 429 can.
    keys = Settings(_env_file=None, api_keys=API_KEY).api_keys  # type: ignore[call-arg, arg-type]
    return settings.model_copy(update={"api_keys": keys, "mailbox_cap": 2})


def test_client_tests_pass_without_celery_redis_or_openai(settings: Settings, api_server: str,
                                                         emulator: EmulatorServer) -> None:
    """``python -m pytest tests/client`` with ``-p block_server_imports`` (celery, kombu, redis and openai
    made unimportable) and ``--noconftest`` (tests/conftest.py imports redis) passes, with every test run and
    none skipped, against this real stack."""
    env = {**os.environ, "PARLEY_CLIENT_TEST_URL": api_server, "PARLEY_CLIENT_TEST_API_KEY": API_KEY,
           "PYTHONPATH": str(TESTS / "client")}
    with workers(settings, 1, concurrency=8):
        run = subprocess.run(
            [sys.executable, "-m", "pytest", str(TESTS / "client"), "-p", "block_server_imports",
             "--noconftest", "-p", "no:cacheprovider", "-q", "-rs", "-n0"],
            cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=300)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20, summary
    assert not re.search(r"skipped|deselected|xfail", summary), summary
