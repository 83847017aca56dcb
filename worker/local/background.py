"""Serve an ASGI app with uvicorn on a daemon thread of this process (tests, ``parley up``)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 now; False when it does not answer (yet) or answers otherwise."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; RuntimeError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not http_ok(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s}s")
        time.sleep(0.05)


class BackgroundServer:
    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int | None = None,
                 lifespan: str = "auto", http: Any = "auto") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=self.port, log_level="critical", access_log=False, lifespan=lifespan,
            timeout_keep_alive=30, http=http))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> Any:
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
