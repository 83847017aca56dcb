"""Run the emulator: in this process on a background thread (tests, ``parley up``) or in the foreground."""

from __future__ import annotations

import uvicorn

from ..background import BackgroundServer
from .app import Emulator
from .faults import EmulatorConfig
from .store import Store


class EmulatorServer(BackgroundServer):
    """An emulator on a free loopback port; ``base_url`` ends in ``/v1``, ready for ``OpenAI(base_url=...)``."""

    def __init__(self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.emulator = Emulator(config)
        super().__init__(self.emulator.app, host=host, port=port, lifespan="off")

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def store(self) -> Store:
        return self.emulator.store

    @property
    def config(self) -> EmulatorConfig:
        return self.emulator.config

    def start(self, timeout_s: float = 10.0) -> EmulatorServer:
        super().start(timeout_s)
        return self


def serve_forever(config: EmulatorConfig, *, host: str, port: int) -> None:
    uvicorn.run(Emulator(config).app, host=host, port=port, log_level="warning", lifespan="off",
                timeout_keep_alive=30)
