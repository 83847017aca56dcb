"""Tenants, scopes, per-key rate limits, key rotation and the audit line, against the real API (uvicorn),
Redis and the emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from conftest import wait_until
from pydantic import SecretStr

from parley.api.auth.keys import digest
from parley.worker.celery_app import QUEUE
from parley.worker.local.background import BackgroundServer
from parley.worker.settings import Settings
from parley.worker.store.keys import Keys

ACME, GLOBEX, READER, POSTER = "acme-secret", "globex-secret", "reader-secret", "poster-secret"
ENTRIES = [
    f"acme-bot:acme:admin:{digest(ACME)}",
    f"globex-bot:globex:admin:{digest(GLOBEX)}",
    f"acme-reader:acme:conversations:read+turns:read:{digest(READER)}",
    f"acme-poster:acme:turns:write:{digest(POSTER)}",
]


def keyed(settings: Settings, entries: list[str] = ENTRIES, **update: Any) -> Settings:
    return settings.model_copy(update={"api_keys": [SecretStr(e) for e in entries], **update})


@pytest.fixture(name="server")
def _server(settings: Settings) -> Iterator[str]:
    from parley.api.main import create_app

    with BackgroundServer(create_app(keyed(settings))) as server:
        yield server.url


def client(url: str, secret: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {secret}"}, timeout=30)


def snapshot(r: redis.Redis) -> dict[str, Any]:
    """Every key with its type and content: what "nothing written" is compared against."""
    dumped: dict[str, Any] = {}
    for key in sorted(r.scan_iter()):
        kind = r.type(key)
        read: dict[str, Callable[[], Any]] = {
            "string": lambda: r.get(key), "hash": lambda: r.hgetall(key), "list": lambda: r.lrange(key, 0, -1),
            "set": lambda: sorted(r.smembers(key)), "zset": lambda: r.zrange(key, 0, -1, withscores=True),
            "stream": lambda: r.xrange(key)}
        dumped[key] = (kind, read[kind]())
    return dumped


def test_another_tenants_ids_are_404_and_nothing_is_written(server: str, redis_client: redis.Redis) -> None:
    """A key of tenant globex gets 404 for every route on acme's conversation and turn, the same answer as for
    an id that does not exist, and Redis is byte for byte what it was (no index touched, no turn queued)."""
    with client(server, ACME) as acme, client(server, GLOBEX) as globex:
        conv = acme.post("/v1/conversations", json={"metadata": {"team": "T1"}}).json()["id"]
        turn = acme.post(f"/v1/conversations/{conv}/turns", json={"input": "mine"}).json()["id"]
        # The turn's wake-up goes out off the request path: the snapshot is taken once it is on the broker.
        wait_until(lambda: redis_client.llen(QUEUE) == 1, timeout_s=5, message="the wake-up on the broker")
        before = snapshot(redis_client)
        calls = [("GET", f"/v1/conversations/{conv}", None), ("POST", f"/v1/conversations/{conv}", {"metadata": {}}),
                 ("GET", f"/v1/conversations/{conv}/items", None), ("DELETE", f"/v1/conversations/{conv}", None),
                 ("POST", f"/v1/conversations/{conv}/turns", {"input": "theirs"}),
                 ("GET", f"/v1/conversations/{conv}/events", None), ("GET", f"/v1/turns/{turn}", None),
                 ("GET", f"/v1/turns/{turn}?wait=1", None), ("POST", f"/v1/turns/{turn}/cancel", None),
                 ("GET", f"/v1/turns/{turn}/events", None)]
        for method, path, body in calls:
            response = globex.request(method, path, json=body)
            missing = globex.request(method, path.replace(conv, "conv_missing").replace(turn, "turn_missing"),
                                     json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["type"] == missing.json()["error"]["type"] == "not_found"
        assert snapshot(redis_client) == before
        # The owner still has it all.
        assert acme.get(f"/v1/turns/{turn}").status_code == 200
        assert acme.get(f"/v1/conversations/{conv}").json()["metadata"] == {"team": "T1"}


def test_get_or_create_keys_are_per_tenant(server: str) -> None:
    """Two bots using the same thread id as ``key`` get two conversations; each gets its own back again."""
    with client(server, ACME) as acme, client(server, GLOBEX) as globex:
        first = acme.post("/v1/conversations", json={"key": "T1/C1/1700000000.1"})
        other = globex.post("/v1/conversations", json={"key": "T1/C1/1700000000.1"})
        assert first.status_code == other.status_code == 201
        assert first.json()["id"] != other.json()["id"]
        again = acme.post("/v1/conversations", json={"key": "T1/C1/1700000000.1"})
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_scopes_are_checked_per_route(server: str) -> None:
    """A read-only key reads but may not post or create (403 ``forbidden`` naming the scope); a key with only
    ``turns:write`` posts but may not read; the tenant is shared, so both reach the same conversation."""
    with client(server, ACME) as admin, client(server, READER) as reader, client(server, POSTER) as poster:
        conv = admin.post("/v1/conversations", json={}).json()["id"]
        posted = poster.post(f"/v1/conversations/{conv}/turns", json={"input": "hi"})
        assert posted.status_code == 202
        turn = posted.json()["id"]
        assert reader.get(f"/v1/turns/{turn}").status_code == 200
        assert reader.get(f"/v1/conversations/{conv}").status_code == 200
        for response, scope in ((reader.post(f"/v1/conversations/{conv}/turns", json={"input": "x"}), "turns:write"),
                                (reader.post("/v1/conversations", json={}), "conversations:write"),
                                (reader.post(f"/v1/turns/{turn}/cancel"), "turns:write"),
                                (poster.get(f"/v1/turns/{turn}"), "turns:read"),
                                (poster.delete(f"/v1/conversations/{conv}"), "conversations:write")):
            assert response.status_code == 403, response.text
            error = response.json()["error"]
            assert error["type"] == "forbidden" and scope in error["message"]


def test_rate_limit_per_key_across_processes(settings: Settings) -> None:
    """At 2 requests/s with a burst of 3, a key's 4th request at once is 429 ``rate_limited`` with Retry-After,
    counted in Redis across two API processes; another key is not affected; after Retry-After it may go on."""
    from parley.api.main import create_app

    limited = keyed(settings, rate_limit_per_s=2.0, rate_limit_burst=3)
    with BackgroundServer(create_app(limited)) as one, BackgroundServer(create_app(limited)) as two:
        with client(one.url, ACME) as a1, client(two.url, ACME) as a2, client(one.url, GLOBEX) as g:
            statuses = [c.get("/v1/conversations/conv_x").status_code for c in (a1, a2, a1)]
            assert statuses == [404, 404, 404]
            refused = a2.get("/v1/conversations/conv_x")
            assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limited"
            retry_after = int(refused.headers["retry-after"])
            assert 1 <= retry_after <= 2
            assert g.get("/v1/conversations/conv_x").status_code == 404
            time.sleep(retry_after)
            assert a1.get("/v1/conversations/conv_x").status_code == 404


def test_keys_file_rotates_without_restart(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    """Keys in PARLEY_API_KEYS_FILE are re-read while the API runs: a key added works and a key removed is 401
    within a couple of seconds; a broken edit keeps the keys in force (and is logged) instead of locking
    every bot out."""
    from parley.api.main import create_app

    path = tmp_path / "keys.txt"
    path.write_text(f"# bots\n{ENTRIES[0]}\n")
    with BackgroundServer(create_app(keyed(settings, [], api_keys_file=str(path)))) as server, \
            client(server.url, ACME) as acme, client(server.url, GLOBEX) as globex:
        assert acme.post("/v1/conversations", json={}).status_code == 201
        assert globex.post("/v1/conversations", json={}).status_code == 401
        path.write_text(f"{ENTRIES[1]}\n")
        wait_until(lambda: globex.post("/v1/conversations", json={}).status_code == 201, timeout_s=5,
                   interval_s=0.2, message="the added key")
        assert acme.post("/v1/conversations", json={}).status_code == 401
        path.write_text("not:a:valid:entry\n")
        time.sleep(1.5)
        assert globex.post("/v1/conversations", json={}).status_code == 201
    captured = capsys.readouterr()
    assert "api_keys_file_invalid" in captured.out + captured.err


def test_one_audit_line_per_request_names_the_key_never_the_secret(settings: Settings,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Each request logs one ``request`` line with the key's name and tenant (refused ones too, as far as they
    got); the secret appears nowhere in the output."""
    from parley.api.main import create_app

    json_logs = keyed(settings, log_format="json", log_level="INFO")
    with BackgroundServer(create_app(json_logs)) as server, client(server.url, ACME) as acme, \
            client(server.url, READER) as reader:
        acme.post("/v1/conversations", json={})
        reader.post("/v1/conversations", json={})
        httpx.get(f"{server.url}/v1/conversations/conv_x", headers={"authorization": f"Bearer {ACME}x"})
    captured = capsys.readouterr()
    out = captured.out + captured.err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert [(r.get("key"), r.get("tenant"), r["status"]) for r in requests] == [
        ("acme-bot", "acme", 201), ("acme-reader", "acme", 403), (None, None, 401)]
    assert ACME not in out and READER not in out


def test_records_from_before_tenants_belong_to_the_default_tenant(settings: Settings, api_http: Callable[..., Any],
                                                                  redis_client: redis.Redis) -> None:
    """A conversation stored without a tenant (and its legacy get-or-create key) is reached by plain keys, which
    belong to the default tenant, and by nobody else."""
    from parley.api.main import create_app

    keys = Keys()
    redis_client.hset(keys.conversation("conv_old"), mapping={"id": "conv_old", "created_at": 1, "metadata": "{}",
                                                               "key": "legacy"})
    redis_client.set(f"{keys.prefix}:conv-key:legacy", "conv_old")
    with BackgroundServer(create_app(keyed(settings, ["a-plain-secret", ENTRIES[1]]))) as server, \
            client(server.url, "a-plain-secret") as plain, client(server.url, GLOBEX) as globex:
        assert plain.get("/v1/conversations/conv_old").status_code == 200
        assert plain.post("/v1/conversations", json={"key": "legacy"}).json()["id"] == "conv_old"
        assert globex.get("/v1/conversations/conv_old").status_code == 404
