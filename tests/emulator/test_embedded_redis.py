"""The embedded Redis starts fast, keeps data across a restart with AOF, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import wait_until

from parley.worker.local.redis_server import EmbeddedRedis, pid_alive


def test_starts_in_under_a_second() -> None:
    started = time.monotonic()
    with EmbeddedRedis() as server:
        elapsed = time.monotonic() - started
        assert redis.Redis.from_url(server.url).ping()
    assert elapsed < 1.0


def test_aof_keeps_data_across_restart() -> None:
    with EmbeddedRedis(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        client.rpush("list", "a", "b")
        time.sleep(1.1)  # appendfsync everysec
        server.restart(kill=True)
        client = redis.Redis.from_url(server.url)
        assert client.get("kept") == b"yes" and client.lrange("list", 0, -1) == [b"a", b"b"]


def test_without_aof_a_restart_forgets() -> None:
    with EmbeddedRedis() as server:
        redis.Redis.from_url(server.url).set("gone", "1")
        server.restart()
        assert redis.Redis.from_url(server.url).get("gone") is None


def test_a_password_or_an_acl_file_locks_it(tmp_path: Path) -> None:
    """With ``password`` the default user needs it; with ``acl_file`` only its users get in. ``url`` carries
    the credentials (quoted), and a client without them is refused."""
    with EmbeddedRedis(password="p@ss/word 1") as server:
        assert redis.Redis.from_url(server.url).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
    acl = tmp_path / "users.acl"
    acl.write_text("user default off\nuser app on >app-pw ~app:* +@all\n")
    with EmbeddedRedis(username="app", password="app-pw", acl_file=acl) as server:
        client = redis.Redis.from_url(server.url)
        assert client.set("app:x", "1") and client.acl_whoami() == "app"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("other", "1")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()


def test_stop_leaves_no_process() -> None:
    server = EmbeddedRedis().start()
    pid = server.pid
    assert pid is not None and pid_alive(pid)
    server.close()
    assert not pid_alive(pid)


def _parent_with_server() -> tuple[subprocess.Popen[str], int]:
    """A Python process that starts an embedded Redis and then idles; returns it and the server's pid."""
    # SIGINT's default handler restored: a shell's background job (nohup, &) inherits it ignored, and the
    # SIGINT case would then wait out the sleep.
    script = ("from parley.worker.local.redis_server import EmbeddedRedis; import signal, time; "
              "signal.signal(signal.SIGINT, signal.default_int_handler); "
              "s = EmbeddedRedis().start(); print(s.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert pid_alive(child_pid)
    return parent, child_pid


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_server_dies_with_its_parent(sig: int) -> None:
    """However the starting process ends (SIGKILL runs no cleanup code at all), the server goes with it."""
    parent, child_pid = _parent_with_server()
    parent.send_signal(sig)
    parent.wait()
    wait_until(lambda: not pid_alive(child_pid), timeout_s=5, message="embedded Redis to exit")
