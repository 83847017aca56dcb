"""A pytest plugin (``-p block_server_imports``) that makes importing the server's dependencies fail, so the
client's tests prove it stands alone: ``sys.modules[name] = None`` turns ``import name`` into ImportError."""

from __future__ import annotations

import sys

BLOCKED = ("celery", "kombu", "redis", "openai")

for _name in BLOCKED:
    if any(loaded == _name or loaded.startswith(_name + ".") for loaded in sys.modules):
        raise RuntimeError(f"{_name} was imported before the blocker could block it")
    sys.modules[_name] = None  # type: ignore[assignment]
