"""What the commands run beside ``parley up`` take from its ``up.json`` (api/cli/discovery.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from parley.api.cli import discovery
from parley.worker.settings import Settings

EMULATOR = "http://127.0.0.1:5999/v1"


@pytest.fixture(autouse=True)
def _no_upstream_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "PARLEY_OPENAI_API_KEY", "PARLEY_OPENAI_BASE_URL", "PARLEY_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def _beside_up(tmp_path: Path, **settings: object) -> Settings:
    discovery.write(tmp_path, discovery.Running(os.getpid(), "http://127.0.0.1:8000", "redis://127.0.0.1:6399/0",
                                                EMULATOR))
    return discovery.beside_up(Settings(_env_file=None, data_dir=str(tmp_path), **settings))  # type: ignore[arg-type]


def test_beside_up_takes_its_redis_and_its_emulator_when_no_upstream_is_set(tmp_path: Path) -> None:
    """With nothing set, the Redis and the emulator of the running ``parley up`` (with the emulator's own key,
    never a real one)."""
    found = _beside_up(tmp_path)
    assert found.redis_url is not None and found.redis_url.get_secret_value() == "redis://127.0.0.1:6399/0"
    assert found.openai_base_url == EMULATOR
    assert found.openai_api_key is not None and found.openai_api_key.get_secret_value() == "local-emulator"


def test_an_upstream_that_is_set_wins_over_the_emulator(tmp_path: Path) -> None:
    """An OpenAI key or a base URL set for the process keeps it on that upstream: the emulator is only the
    default, as in ``parley up`` itself."""
    with_key = _beside_up(tmp_path, openai_api_key=SecretStr("sk-test"))
    assert with_key.openai_base_url is None and with_key.openai_api_key.get_secret_value() == "sk-test"
    with_url = _beside_up(tmp_path, openai_base_url="http://upstream.example/v1")
    assert with_url.openai_base_url == "http://upstream.example/v1"


def test_an_up_json_of_an_older_parley_without_an_emulator_entry_still_reads(tmp_path: Path) -> None:
    """A file written before the emulator was recorded (three fields) is read, with no emulator."""
    (tmp_path / discovery.RUNFILE).write_text(
        f'{{"pid": {os.getpid()}, "api_url": "http://127.0.0.1:8000", "redis_url": "redis://x:1/0"}}')
    running = discovery.read(tmp_path)
    assert running is not None and running.emulator_url is None
