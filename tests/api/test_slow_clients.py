"""Slow clients cannot hold connections forever: headers and bodies each have a deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from parley.api.http_protocol import with_header_deadline
from parley.api.main import create_app
from parley.worker.local.background import BackgroundServer
from parley.worker.settings import Settings


@pytest.fixture(name="server")
def _server(settings: Settings) -> Iterator[BackgroundServer]:
    quick = settings.model_copy(update={"header_timeout_s": 0.5, "body_timeout_s": 1.0})
    with BackgroundServer(create_app(quick), http=with_header_deadline(quick.header_timeout_s)) as server:
        yield server


def _connect(server: BackgroundServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_headers_sent_a_line_at_a_time_are_cut_off(server: BackgroundServer) -> None:
    """Partial headers, one line every 0.2 s, never finishing: the connection is closed about the header
    deadline (0.5 s) after the request began, instead of being held as long as the client likes."""
    sock = _connect(server)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closed = False
    for i in range(20):
        time.sleep(0.2)
        try:
            sock.sendall(b"X-Slow-%d: y\r\n" % i)
        except OSError:
            closed = True
            break
    assert closed or _closed_within(sock, 1.0)
    assert time.monotonic() - started < 3.0
    sock.close()


def test_a_silent_connection_is_closed(server: BackgroundServer) -> None:
    """A connection that sends nothing at all is closed at the header deadline too."""
    sock = _connect(server)
    assert _closed_within(sock, 2.0)
    sock.close()


def test_a_body_sent_a_byte_at_a_time_gets_408(server: BackgroundServer) -> None:
    """Headers complete, then a 40-byte body at a byte per 0.1 s: 408 ``body_timeout`` at the 1 s deadline."""
    sock = _connect(server)
    sock.sendall(b"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 40\r\n\r\n")
    started, answer = time.monotonic(), b""
    sock.settimeout(0.1)
    for _ in range(40):
        try:
            sock.sendall(b" ")
            answer += sock.recv(4096)
        except (TimeoutError, BlockingIOError):
            continue
        except OSError:
            break
        if answer:
            break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"body_timeout"' in answer or _read_rest(sock, answer).find(b'"body_timeout"') >= 0
    assert time.monotonic() - started < 3.0
    sock.close()


def _read_rest(sock: socket.socket, head: bytes) -> bytes:
    sock.settimeout(2)
    try:
        while chunk := sock.recv(4096):
            head += chunk
    except OSError:
        pass
    return head


def test_a_normal_request_on_the_same_server_is_served(server: BackgroundServer) -> None:
    """The deadlines do not touch a client that sends promptly, also on a kept-alive connection."""
    sock = _connect(server)
    for _ in range(2):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(0.3)
    sock.close()


def test_an_event_stream_outlives_the_body_deadline(server: BackgroundServer) -> None:
    """The body deadline covers only the body: an SSE stream open for longer still gets its events."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=10) as http:
        conv = http.post("/v1/conversations", json={}).json()["id"]
        with http.stream("GET", f"/v1/conversations/{conv}/events") as stream:
            time.sleep(1.6)
            http.post(f"/v1/conversations/{conv}/turns", json={"input": "late"})
            lines = stream.iter_lines()
            assert any(line.startswith("event: turn.queued") for line in lines)


@pytest.mark.slow
def test_parley_api_closes_slow_header_connections(settings: Settings) -> None:
    """The real ``parley api`` process uses the header deadline (PARLEY_HEADER_TIMEOUT_S)."""
    from conftest import settings_env

    from parley.worker.local.background import free_port, wait_http
    from parley.worker.local.processes import spawn, stop

    port = free_port()
    env = {**settings_env(settings), "PARLEY_HEADER_TIMEOUT_S": "0.5"}
    api = spawn(["python", "-m", "parley", "api", "--port", str(port)], env=env, quiet=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        assert _closed_within(sock, 3.0) and time.monotonic() - started < 3.0
        sock.close()
    finally:
        stop(api)


@pytest.mark.slow
def test_parley_api_caps_its_connections(settings: Settings) -> None:
    """With PARLEY_MAX_CONNECTIONS=3, three idle connections fill a real ``parley api`` process: a fourth
    request is answered 503 at once instead of holding one more connection; once they leave, it is served."""
    from conftest import settings_env

    from parley.worker.local.background import free_port, wait_http
    from parley.worker.local.processes import spawn, stop

    port = free_port()
    env = {**settings_env(settings), "PARLEY_MAX_CONNECTIONS": "3", "PARLEY_HEADER_TIMEOUT_S": "30"}
    api = spawn(["python", "-m", "parley", "api", "--port", str(port)], env=env, quiet=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30)
        time.sleep(0.2)  # the readiness probe's connection has gone
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 503
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        stop(api)
