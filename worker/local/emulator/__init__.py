"""A local emulator of OpenAI's Conversations and Responses HTTP API (see docs/emulator.md)."""

from .app import Emulator
from .faults import EmulatorConfig
from .server import EmulatorServer

__all__ = ["Emulator", "EmulatorConfig", "EmulatorServer"]
