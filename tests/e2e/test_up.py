"""The README's promise: `parley up` starts everything with embedded defaults, the commands beside it find it,
Ctrl-C stops it cleanly whatever the signal disposition it inherited, a dead part stops it loudly, and its
data survives a restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from up_support import Up, clean_env, cmdline

from parley.api.client import ParleyClient
from parley.worker.local.background import free_port

pytestmark = pytest.mark.slow

StartUp = Callable[..., Up]


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[StartUp]:
    """Starts `parley up` in ``tmp_path``; whatever happens, all each one started is killed at the end."""
    started: list[Up] = []

    def start(*args: str, env: dict[str, str] | None = None, sigint_ignored: bool = False) -> Up:
        up = Up(tmp_path, *args, env=env or clean_env(), sigint_ignored=sigint_ignored)
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill_all()


def parley(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parley", *argv], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=60)


def test_up_serves_turns_and_ctrl_c_stops_everything(tmp_path: Path, start_up: StartUp) -> None:
    """Started as a background job would be (SIGINT ignored), on PARLEY_PORT, with Flower: `send` and
    `dead-letter` beside it find it without any setting; the reaper's runs do not log at INFO; Ctrl-C stops
    every process it started, prints no traceback, and removes up.json."""
    port = free_port()
    up = start_up("--flower", env=clean_env(PARLEY_PORT=str(port), PARLEY_FLOWER_PORT=str(free_port())),
                  sigint_ignored=True)
    up.wait_ready(f"http://127.0.0.1:{port}")
    assert len(up.seen) >= 6  # redis, emulator, flower, api, worker, beat
    running = json.loads((tmp_path / ".parley" / "up.json").read_text())
    assert running["emulator_url"].startswith("http://127.0.0.1:")  # for slack-socket and discord-bot beside it

    first = parley(tmp_path, "send", "hello", "--conversation", "demo")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Reply 1 to: hello")
    second = parley(tmp_path, "send", "again", "--conversation", "demo")
    assert second.stdout.startswith("Reply 2 to: again"), second.stderr
    letters = parley(tmp_path, "dead-letter", "list")
    assert letters.returncode == 0 and letters.stdout == "", letters.stderr

    assert up.interrupt() == 0
    stderr = up.stderr
    assert "Traceback" not in stderr, stderr
    assert "upstream: the local OpenAI emulator, because no OPENAI_API_KEY is set" in stderr
    assert f"parley api on http://127.0.0.1:{port}" in stderr and "worker_started" in stderr
    assert "beat_started" in stderr
    assert "Sending due task" not in stderr and "Task parley.reap[" not in stderr  # the reaper ran, quietly
    assert "\nstopping...\n" in stderr and stderr.endswith("\nstopped\n"), stderr[-2000:]
    assert up.leftovers() == []
    assert not (tmp_path / ".parley" / "up.json").exists()


def test_up_delivers_webhooks_signed_with_the_secret_it_keeps(tmp_path: Path, start_up: StartUp) -> None:
    """`parley up` runs the webhook dispatcher too, signing with a secret it keeps in the data dir: a receiver
    that verifies with that secret gets the turn's terminal event."""
    from webhooks_support import ids, receiver

    port, hook_port = free_port(), free_port()
    up = start_up(env=clean_env(PARLEY_PORT=str(port)))
    up.wait_ready(f"http://127.0.0.1:{port}")
    secret = (tmp_path / ".parley" / "webhook-secret").read_text().strip()
    assert secret.startswith("whsec_") and (tmp_path / ".parley" / "webhook-secret").stat().st_mode & 0o077 == 0
    out = tmp_path / "hooks.txt"
    with receiver(hook_port, out, secret), ParleyClient(f"http://127.0.0.1:{port}") as client:
        conv = client.create_conversation(key="hooked")
        client.update_conversation(conv.id, webhook_url=f"http://127.0.0.1:{hook_port}/hook")
        turn = client.send_turn(conv.id, "hello")
        wait_until(lambda: ids(out) == [f"{turn.id}.completed"], timeout_s=30, message="the webhook")
    assert up.interrupt() == 0 and up.leftovers() == []


def test_history_survives_a_restart_with_the_same_data_dir(tmp_path: Path, start_up: StartUp) -> None:
    """A conversation and its completed turn are still there after Ctrl-C and a new `parley up --data-dir` on
    the same directory (Redis keeps an append-only file there, the emulator its conversations), and the
    conversation goes on (here with --emulator despite an exported OPENAI_API_KEY); while one runs, a second
    one on the directory refuses to start."""
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = start_up("--port", str(port), "--data-dir", str(data_dir))
    first.wait_ready(url)
    with ParleyClient(url) as client:
        conversation = client.create_conversation(key="keep")
        turn = client.wait_for_reply(client.send_turn(conversation.id, "remember me").id, timeout_s=60)
    assert turn.status.value == "completed"
    other = subprocess.run([sys.executable, "-m", "parley", "up", "--data-dir", str(data_dir)], cwd=tmp_path,
                           env=clean_env(), capture_output=True, text=True, timeout=30)
    assert other.returncode == 1 and "another parley up" in other.stderr  # one data directory, one stack
    assert first.interrupt() == 0
    assert (data_dir / "redis").is_dir()

    # With an OpenAI key exported, --emulator still uses the emulator (and does not send it the key).
    second = start_up("--port", str(port), "--data-dir", str(data_dir), "--emulator",
                      env=clean_env(OPENAI_API_KEY="sk-test-not-a-real-key"))
    second.wait_ready(url)
    assert "upstream: the local OpenAI emulator, because --emulator was given" in second.stderr
    with ParleyClient(url) as client:
        assert client.create_conversation(key="keep").id == conversation.id
        again = client.wait_for_reply(turn.id, timeout_s=10)
        assert again.status.value == "completed" and again.output_text == turn.output_text
        # The emulator kept the conversation too: the next turn is its second.
        following = client.wait_for_reply(client.send_turn(conversation.id, "and now").id, timeout_s=60)
    assert following.output_text is not None and following.output_text.startswith("Reply 2 to: and now")
    assert second.interrupt(sig=signal.SIGTERM) == 0  # as a service manager stops it
    assert "Traceback" not in second.stderr


@pytest.mark.parametrize("which", ["api", "flower"])
def test_a_busy_port_fails_before_anything_starts(tmp_path: Path, which: str) -> None:
    """A port in use (the API's, or Flower's with --flower) is one clear line and exit 1, before anything is
    started or "parley is up" is printed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        args = ["--port", str(busy)] if which == "api" else ["--port", str(free_port()), "--flower"]
        env = clean_env(PARLEY_FLOWER_PORT=str(busy))
        result = subprocess.run([sys.executable, "-m", "parley", "up", *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"parley up: port {busy} ({'API' if which == 'api' else 'Flower'}) on 127.0.0.1 is already in use; "
        f"choose another with {'--port or PARLEY_PORT' if which == 'api' else 'PARLEY_FLOWER_PORT'}"]
    assert not (tmp_path / ".parley").exists()


def test_a_dead_redis_stops_everything_and_is_named(tmp_path: Path, start_up: StartUp) -> None:
    """When the embedded Redis dies, `parley up` notices, stops every other process, says Redis died and
    how, and exits 1."""
    port = free_port()
    up = start_up("--port", str(port))
    up.wait_ready(f"http://127.0.0.1:{port}")
    redis_pids = [pid for pid in up.seen if "valkey-server" in cmdline(pid) or "redis-server" in cmdline(pid)]
    assert len(redis_pids) == 1
    os.kill(redis_pids[0], signal.SIGKILL)
    assert up.wait_exit(60) == 1
    assert "redis died (killed by SIGKILL); stopping everything" in up.stderr
    assert up.leftovers() == []
