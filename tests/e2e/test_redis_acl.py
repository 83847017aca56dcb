"""deploy/redis/users.acl is enough for parley and no more: with the default user off and only that ACL user,
``parley up`` against it (API, a Celery worker, beat and its reaper, the webhook dispatcher, Flower, the
emulator) and the commands beside it run conversations in order, and Redis's ACL LOG records no command,
key or channel refused."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from conftest import wait_until
from up_support import Up, clean_env
from webhooks_support import ids, receiver

from parley.api.client import ParleyClient
from parley.worker.local.background import free_port
from parley.worker.local.redis_server import EmbeddedRedis

pytestmark = pytest.mark.slow

ACL_FILE = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "users.acl"
PASSWORD = "acl-test-pw-6f2b"
ADMIN = ("acl-test-admin", "acl-admin-pw-0d9e")
"""The test's own user, to read the ACL LOG and the keys; parley never uses it."""
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONVERSATIONS, TURNS = 4, 3


def acl_with(password: str, path: Path) -> Path:
    """The shipped file with its placeholder replaced by the password's SHA-256 (as the docs say to), plus the
    test's admin user."""
    text = ACL_FILE.read_text()
    assert text.count(">change-me") == 1
    hashed = "#" + hashlib.sha256(password.encode()).hexdigest()
    path.write_text(text.replace(">change-me", hashed) + f"user {ADMIN[0]} on >{ADMIN[1]} ~* &* +@all\n")
    return path


@pytest.fixture(name="acl_redis")
def _acl_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(username="parley", password=PASSWORD, acl_file=acl_with(PASSWORD, tmp_path / "u.acl"),
                       extra_args=("--acllog-max-len", "1000")) as server:
        yield server


def refused(admin: redis.Redis) -> list[str]:
    """What the ACL LOG holds: each refused command, key or channel, once."""
    return sorted({f"{e['reason']} {e['object']} ({e['username']}: {e['context']})"
                   for e in admin.acl_log(count=1000)})


def test_parley_runs_as_the_acl_user_and_nothing_is_refused(acl_redis: EmbeddedRedis, tmp_path: Path) -> None:
    """Besides order and completion: the default user is off, and the ACL user cannot touch a key outside
    parley's (so the rule does restrict)."""
    admin = redis.Redis(port=acl_redis.port, username=ADMIN[0], password=ADMIN[1], decode_responses=True)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=acl_redis.port).ping()
    parley_user = redis.Redis.from_url(acl_redis.url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        parley_user.set("someone-else:key", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        parley_user.flushall()
    admin.acl_log_reset()

    port, flower_port, hook_port = free_port(), free_port(), free_port()
    env = clean_env(PARLEY_REDIS_URL=acl_redis.url, PARLEY_PORT=str(port),
                    PARLEY_FLOWER_PORT=str(flower_port), PARLEY_FLOWER_BASIC_AUTH="admin:flower-pw",
                    PARLEY_WEBHOOK_SECRET=WEBHOOK_SECRET, PARLEY_WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook",
                    PARLEY_REAPER_INTERVAL_S="1")
    up = Up(tmp_path, "--flower", env=env)
    hooks = tmp_path / "hooks.txt"
    base = f"http://127.0.0.1:{port}"
    try:
        up.wait_ready(base)
        with receiver(hook_port, hooks, WEBHOOK_SECRET), ParleyClient(base) as client:
            convs = [client.create_conversation(key=f"acl-{i}", metadata={"n": str(i)}).id
                     for i in range(CONVERSATIONS)]
            client.update_conversation(convs[0], metadata={"n": "0", "updated": "yes"})
            accepted = {conv: [client.send_turn(conv, f"{conv[-4:]} t{t}", idempotency_key=f"{conv}-{t}").id
                               for t in range(TURNS)] for conv in convs}
            finished = {t: client.wait_for_reply(t, timeout_s=60) for ts in accepted.values() for t in ts}
            for conv, turns in accepted.items():
                outputs = [finished[t].output_text or "" for t in turns]
                assert [o.split(" ", 4)[:4] for o in outputs] == [
                    ["Reply", str(n + 1), "to:", f"{conv[-4:]}"] for n in range(TURNS)], outputs
                assert all(finished[t].status.value == "completed" for t in turns)
            assert [e.type for e in client.stream_turn(accepted[convs[0]][0])][-1] == "turn.completed"
            slow = client.send_turn(convs[1], "slow", metadata={"emulator_fault": "latency=1500"}).id
            queued = client.send_turn(convs[1], "queued").id
            assert client.cancel_turn(queued).status.value == "cancelled"
            assert client.wait_for_reply(slow, timeout_s=30).status.value == "completed"
            assert client.list_items(convs[2]).data
            client.delete_conversation(convs[3])
            wait_until(lambda: len(ids(hooks)) >= CONVERSATIONS * TURNS, timeout_s=30, message="webhooks")
            assert httpx.get(f"{base}/metrics", timeout=10).status_code == 200
        # The reaper (beat) ran as the ACL user: it keeps the backlog numbers in parley:stats.
        wait_until(lambda: admin.exists("parley:stats"), timeout_s=15, message="the reaper's stats")
        workers = httpx.get(f"http://127.0.0.1:{flower_port}/api/workers", auth=("admin", "flower-pw"),
                            params={"refresh": "1"}, timeout=30)
        assert workers.status_code == 200 and any(name.startswith("celery@") for name in workers.json()), (
            workers.text, refused(admin))
        beside = [up_command(tmp_path, env, *argv) for argv in (("send", "beside", "--conversation", "cli"),
                                                                ("dead-letter", "list"),
                                                                ("webhooks", "dead-letters", "list"))]
        assert [r.returncode for r in beside] == [0, 0, 0], [r.stderr for r in beside]
        assert beside[0].stdout.startswith("Reply 1 to: beside")
        assert up.interrupt() == 0
    finally:
        up.kill_all()
    assert refused(admin) == [], json.dumps(admin.acl_log(count=50), indent=1, default=str)
    assert "Traceback" not in up.stderr, up.stderr[-3000:]


def up_command(cwd: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parley", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
