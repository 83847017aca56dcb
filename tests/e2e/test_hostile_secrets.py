"""Hostile input against planted secrets: a production API (JSON logs) on uvicorn and a Celery worker, a
Redis that needs a password, an OpenAI key, a provider that echoes that key, and two real unhandled 500s
(a record of the wrong Redis type, a record that does not parse). Neither the Redis password nor the OpenAI
key shows up in any log line, any Redis key or value, any event, or any API answer."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from conftest import settings_env, wait_until
from secrets_support import dump_redis
from stack import wait_ready

from parley.worker.local.background import free_port, http_ok
from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.processes import spawn, stop
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.secret_url import SecretUrl
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

pytestmark = pytest.mark.slow

REDIS_PASSWORD = "rp-PLANTED-5c0ffee-redis"
OPENAI_KEY = "oai-PLANTED-9d1e77-key"
"""Shaped like no known key (no ``sk-``): only masking by value can catch it."""
API_KEY = "api-PLANTED-31337-long-enough-for-production"  # production refuses keys under 32 chars
SECRETS = (REDIS_PASSWORD, OPENAI_KEY, API_KEY)


class Recorder:
    """Every API answer, status line, headers and body, as one text to grep."""

    def __init__(self) -> None:
        self.answers: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.answers.append(f"{response.status_code} {dict(response.headers)} {response.text}")


@pytest.fixture(name="locked_redis")
def _locked_redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(password=REDIS_PASSWORD) as server:
        yield server


def test_no_secret_leaks_from_a_production_500(settings: Settings, emulator: EmulatorServer,
                                               locked_redis: EmbeddedRedis, tmp_path: Path) -> None:
    production = settings.model_copy(update={"redis_url": SecretUrl(locked_redis.url), "log_format": "auto",
                                             "log_level": "INFO"})
    env = {**settings_env(production), "PARLEY_ENVIRONMENT": "production",
           "PARLEY_OPENAI_API_KEY": OPENAI_KEY, "PARLEY_API_KEYS": API_KEY}
    env.pop("PARLEY_LOG_FORMAT")  # production alone must mean JSON logs
    emulator.config.api_keys = (OPENAI_KEY,)  # parley's calls get through only with the planted key
    port = free_port()
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    api = spawn(["python", "-m", "parley", "api", "--port", str(port)], env=env, log_path=str(api_log))
    worker = spawn(["python", "-m", "parley", "worker", "-n", "secrets@%h"], env=env,
                   log_path=str(worker_log))
    recorder = Recorder()
    store = redis.Redis.from_url(locked_redis.url, decode_responses=True)
    keys = Keys()
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout_s=30, message="the API")
        wait_ready(production, ["secrets"])
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {API_KEY}"},
                          event_hooks={"response": [recorder]}, timeout=30) as http:
            conv, other = (http.post("/v1/conversations", json={}).json()["id"] for _ in range(2))
            ok = http.post(f"/v1/conversations/{conv}/turns", json={"input": "fine"}).json()["id"]
            assert http.get(f"/v1/turns/{ok}", params={"wait": 20}).json()["status"] == "completed"
            # Now the provider refuses the key and repeats it, and the header, in its 401.
            emulator.config.api_keys, emulator.config.echo_rejected_key = ("another-key",), True
            echoed = http.post(f"/v1/conversations/{conv}/turns", json={"input": "echo"}).json()["id"]
            failed = http.get(f"/v1/turns/{echoed}", params={"wait": 20}).json()
            assert failed["status"] == "failed" and failed["error"]["type"] == "upstream_auth_failed"
            assert "Incorrect API key provided: [redacted]" in failed["error"]["message"]  # it was echoed
            refused = http.post("/v1/conversations", json={})  # the API's own upstream call, echoed too
            assert refused.status_code == 502 and "[redacted]" in refused.text
            for turn in (ok, echoed):
                with http.stream("GET", f"/v1/turns/{turn}/events") as events:
                    events.read()
            # Two honest 500s: a turn key and a conversation key of the wrong type (WRONGTYPE from Redis). A
            # turn record whose JSON does not parse is served (damaged records stay readable), not a 500.
            wrong_type, corrupt = (f"turn_{n:016x}_{conv}" for n in (1, 2))
            store.set(keys.turn(conv, wrong_type), "not a hash")
            store.delete(keys.conversation(other))
            store.set(keys.conversation(other), "not a hash")
            store.hset(keys.turn(conv, corrupt), mapping={"status": "completed", "input": "x",
                                                          "created_at": "1", "usage": "{truncated"})
            assert http.get(f"/v1/turns/{corrupt}").status_code == 200
            for path in (f"/v1/turns/{wrong_type}", f"/v1/conversations/{other}"):
                crashed = http.get(path)
                assert crashed.status_code == 500
                assert crashed.json() == {"error": {"type": "internal_error", "message": "Internal error."}}
        stored = dump_redis(store)
    finally:
        stop(worker, sig=signal.SIGTERM)
        stop(api, sig=signal.SIGTERM)
        store.close()
    api_lines = [json.loads(line) for line in api_log.read_text().splitlines() if line.startswith("{")]
    crashes = [line for line in api_lines if line.get("event") == "unhandled_error"]
    # JSON lines, with tracebacks
    assert len(crashes) == 2 and all(line["exception"] for line in crashes), api_lines
    assert {"ResponseError"} <= {frame["exc_type"] for line in crashes for frame in line["exception"]}
    logs = api_log.read_text() + worker_log.read_text()
    assert "upstream_auth_failed" in logs and "worker_started" in logs
    assert "[redacted]" in stored and "Incorrect API key provided" in stored  # the echo, masked, is stored
    for secret in SECRETS:
        assert secret not in logs, f"{secret} in the logs"
        assert secret not in stored, f"{secret} in Redis"
        assert all(secret not in answer for answer in recorder.answers), f"{secret} in an API answer"
