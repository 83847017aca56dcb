"""Run the emulator: in this process on a background thread (tests, ``parley up``) or in the foreground."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from .app import Emulator
from .faults import EmulatorConfig


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmulatorServer:
    """An emulator on a free loopback port, served by uvicorn on a daemon thread.

    ``base_url`` ends in ``/v1`` so it can be given to ``OpenAI(base_url=...)`` as is.
    """

    def __init__(self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.emulator = Emulator(config)
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(uvicorn.Config(
            self.emulator.app, host=host, port=self.port, log_level="critical", access_log=False,
            lifespan="off", timeout_keep_alive=30))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def store(self) -> Any:
        return self.emulator.store

    @property
    def config(self) -> EmulatorConfig:
        return self.emulator.config

    def start(self, timeout_s: float = 10.0) -> EmulatorServer:
        self._thread = threading.Thread(target=self._server.run, name="parley-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"emulator did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(config: EmulatorConfig, *, host: str, port: int) -> None:
    uvicorn.run(Emulator(config).app, host=host, port=port, log_level="warning", lifespan="off",
                timeout_keep_alive=30)
