"""The CLI says what it does: its version, help with defaults, and one clear line instead of a silent retry
when the worker or beat has no Redis to talk to."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from up_support import clean_env

import parley
from parley.worker.local.background import free_port


def run(*argv: str, env: dict[str, str] | None = None,
        timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parley", *argv], env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout_s)


def test_version() -> None:
    """`parley --version` prints the installed package's version."""
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"parley {parley.__version__}"


@pytest.mark.parametrize("argv", [(), ("up",), ("api",), ("send",), ("emulator",)])
def test_help_is_plain_text_with_defaults(argv: tuple[str, ...]) -> None:
    """Every help screen is plain text (no reST double backticks) and options show their defaults."""
    result = run(*argv, "--help")
    assert result.returncode == 0 and "``" not in result.stdout
    if argv:
        assert "(default: " in result.stdout


def test_up_help_shows_settings_defaults() -> None:
    """`parley up --port` and `--data-dir` default to PARLEY_PORT and PARLEY_DATA_DIR."""
    result = run("up", "--help", env=clean_env(PARLEY_PORT="8123", PARLEY_DATA_DIR="/srv/parley"))
    assert "(default: 8123)" in result.stdout and "(default: /srv/parley)" in result.stdout


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_and_beat_have_their_own_help(command: str) -> None:
    """`parley worker --help` / `beat --help` say what runs and which settings matter (not Celery's help)."""
    result = run(command, "--help")
    assert result.returncode == 0 and "Usage: celery" not in result.stdout
    assert result.stdout.startswith(f"usage: parley {command}") and "PARLEY_REDIS_URL" in result.stdout
    assert f"Further arguments go to `celery {command}`" in result.stdout


@pytest.mark.parametrize("command", ["worker", "beat"])
@pytest.mark.parametrize("redis_url", [None, "unreachable"])
def test_worker_and_beat_without_redis_fail_fast(command: str, redis_url: str | None) -> None:
    """Without PARLEY_REDIS_URL, or with one nobody answers, `parley worker` and `parley beat` exit 1 at once
    with one line saying so (Celery alone retries localhost:6379 silently, forever)."""
    env = clean_env() if redis_url is None else clean_env(PARLEY_REDIS_URL=f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    result = run(command, env=env, timeout_s=30)
    assert result.returncode == 1 and time.monotonic() - started < 20
    [line] = result.stderr.strip().splitlines()
    if redis_url is None:
        assert line.startswith(f"parley {command}: PARLEY_REDIS_URL is not set")
    else:
        assert line.startswith(f"parley {command}: cannot reach Redis at redis://:[redacted]@127.0.0.1:")
        assert "s3cret" not in line


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_and_beat_with_an_unreachable_broker_fail_fast(command: str, redis_url: str) -> None:
    """With Redis up but a PARLEY_BROKER_URL nobody answers, `parley worker` and `parley beat` exit 1 at once
    with one line naming the broker, its password masked."""
    broker = f"amqp://parley:s3cret-mq@127.0.0.1:{free_port()}//"
    started = time.monotonic()
    result = run(command, env=clean_env(PARLEY_REDIS_URL=redis_url, PARLEY_BROKER_URL=broker), timeout_s=30)
    assert result.returncode == 1 and time.monotonic() - started < 20
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"parley {command}: cannot reach the broker at amqp://parley:[redacted]@127.0.0.1:")
    assert "s3cret-mq" not in line


def test_chat_turns_on_line_editing_only_at_a_terminal() -> None:
    """`parley chat` loads readline (arrow keys, history) when a person types at a terminal, not at a pipe."""
    from parley.api.cli.chat import enable_line_editing

    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd) as pipe:
        assert enable_line_editing(pipe) is False
    os.close(write_fd)
    primary, secondary = os.openpty()
    with os.fdopen(secondary) as terminal:
        assert enable_line_editing(terminal) is True
    os.close(primary)
    assert "readline" in sys.modules


def test_api_refuses_public_bind_without_keys() -> None:
    """Without PARLEY_API_KEYS, `parley api` refuses to bind anything but loopback."""
    result = run("api", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2 and "PARLEY_API_KEYS" in result.stderr


@pytest.mark.slow
def test_dead_letter_commands(settings, redis_client) -> None:  # type: ignore[no-untyped-def]
    """`parley dead-letter list|show|requeue|drop` on a real dead-lettered turn."""
    from conftest import settings_env

    from parley.worker.messages import Turn, TurnStatus, new_turn_id
    from parley.worker.store.keys import Keys

    keys = Keys()
    conv = "conv_dl"
    turn_id = new_turn_id(conv)
    redis_client.hset(keys.conversation(conv), mapping={"id": conv, "created_at": 1, "metadata": "{}"})
    turn = Turn(id=turn_id, conversation_id=conv, status=TurnStatus.failed, input="x", created_at=1.0)
    redis_client.hset(keys.turn(conv, turn_id), mapping=turn.to_hash())
    redis_client.zadd(keys.dead_letters, {f"{conv}/{turn_id}": 1.0})
    env = {**clean_env(), **settings_env(settings)}

    def parley(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "parley", "dead-letter", *argv], env=env,
                              capture_output=True, text=True, timeout=30)

    assert turn_id in parley("list").stdout
    assert '"status": "failed"' in parley("show", turn_id).stdout
    assert parley("requeue", turn_id).returncode == 0
    assert redis_client.hget(keys.turn(conv, turn_id), "status") == "queued"
    assert redis_client.lrange(keys.inbox(conv), 0, -1) == [turn_id]
    assert parley("list").stdout.strip() == ""
    assert parley("drop", turn_id).returncode == 1  # no longer dead-lettered
