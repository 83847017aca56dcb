"""The README's promise: `parley up` starts everything with embedded defaults, `parley send` gets a reply, and
Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_until

from parley.worker.local.background import free_port, http_ok

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    drop = ("PARLEY_REDIS_URL", "OPENAI_API_KEY", "PARLEY_OPENAI_API_KEY", "PARLEY_OPENAI_BASE_URL",
            "PARLEY_API_KEYS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _descendants(pid: int) -> set[int]:
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(entry.name)
            children |= {child} | _descendants(child)
    return children


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_send_and_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "parley", "up", "--port", str(port)], env=_clean_env(),
                          cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout_s=60, interval_s=0.2, message="parley up to be ready")
        children = _descendants(up.pid)
        assert len(children) >= 5  # redis, emulator, api, worker, beat
        send = [sys.executable, "-m", "parley", "send", "hello", "--conversation", "demo", "--url",
                f"http://127.0.0.1:{port}"]
        first = subprocess.run(send, env=_clean_env(), capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("Reply 1 to: hello")
        second = subprocess.run(send[:4] + ["again"] + send[5:], env=_clean_env(), capture_output=True,
                                text=True, timeout=60)
        assert second.stdout.startswith("Reply 2 to: again"), second.stderr
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    time.sleep(0.5)
    assert [pid for pid in children if _alive(pid)] == []


def test_api_refuses_public_bind_without_keys() -> None:
    result = subprocess.run([sys.executable, "-m", "parley", "api", "--host", "0.0.0.0", "--port",
                             str(free_port())], env=_clean_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "PARLEY_API_KEYS" in result.stderr


def test_dead_letter_commands(settings, redis_client) -> None:  # type: ignore[no-untyped-def]
    """`parley dead-letter list|show|requeue|drop` on a real dead-lettered turn."""
    from conftest import settings_env

    from parley.worker.keys import Keys
    from parley.worker.messages import Turn, TurnStatus

    keys = Keys()
    conv, turn_id = "conv_dl", "turn_dead1"
    turn = Turn(id=turn_id, conversation_id=conv, status=TurnStatus.failed, input="x", created_at=1.0)
    redis_client.hset(keys.turn(conv, turn_id), mapping=turn.to_hash())
    redis_client.zadd(keys.dead_letters, {f"{conv}/{turn_id}": 1.0})
    env = {**_clean_env(), **settings_env(settings)}

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
