"""Run the emulator: in this process on a background thread (tests, ``parley up``) or in the foreground."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import uvicorn

from ..background import BackgroundServer
from .app import Emulator
from .faults import EmulatorConfig
from .store import Store


class EmulatorServer(BackgroundServer):
    """An emulator on a free loopback port; ``base_url`` ends in ``/v1``, ready for
    ``OpenAI(base_url=...)``."""

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


def serve_forever(config: EmulatorConfig, *, host: str, port: int, state_file: Path | None = None) -> None:
    """Serve until SIGINT or SIGTERM; with ``state_file``, conversations are loaded from and saved to it."""
    emulator = Emulator(config)
    if state_file is not None:
        emulator.store.load(state_file)
    # uvicorn shuts down on SIGINT/SIGTERM, then raises the signal again for the handler it found: with the
    # default ones the process would die (or raise KeyboardInterrupt) before the state is saved.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_quietly)
    try:
        uvicorn.run(emulator.app, host=host, port=port, log_level="warning", lifespan="off",
                    timeout_keep_alive=30)
    except SystemExit:
        pass
    finally:
        if state_file is not None:
            emulator.store.save(state_file)


def _exit_quietly(signum: int, _: FrameType | None) -> None:
    raise SystemExit(0)
