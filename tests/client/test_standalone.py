"""The client imports neither Celery nor Redis nor the OpenAI SDK (run with ``-p block_server_imports``)."""

from __future__ import annotations

import importlib
import sys

import pytest
from block_server_imports import BLOCKED


@pytest.mark.parametrize("name", BLOCKED)
def test_server_dependencies_cannot_be_imported_here(name: str) -> None:
    """The blocker is active in this process: importing a server dependency fails, so every other test of
    the client here passing proves the client does without it."""
    with pytest.raises(ImportError):
        importlib.import_module(name)


def test_the_public_client_surface_imports() -> None:
    """``from parley import ...`` gives the clients, their errors and the event models, and loads none of
    the server's packages (parley.worker is there only for the pydantic event and turn models)."""
    from parley import AsyncParleyClient, Event, NotFoundError, ParleyClient, ParleyTimeoutError  # noqa: F401

    loaded = {name for name, module in sys.modules.items() if module is not None}
    assert not {name for name in loaded if name.split(".")[0] in BLOCKED}
    server_side = {"parley.api.main", "parley.api.routes", "parley.worker.store.ingress", "parley.worker.settings",
                   "parley.worker.tasks", "parley.worker.events.replies"}
    assert not loaded & server_side
