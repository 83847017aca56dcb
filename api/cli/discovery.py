"""How the commands run beside ``parley up`` find it: ``up`` writes ``up.json`` in its data directory (where
its API and Redis are) and removes it on a clean stop. Explicit settings (``PARLEY_REDIS_URL``, ``--url``,
``PARLEY_URL``) always win over what is found there."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr

from parley.worker.local.redis_server import pid_alive
from parley.worker.secret_url import SecretUrl
from parley.worker.settings import Settings

RUNFILE = "up.json"


@dataclass(frozen=True)
class Running:
    """A ``parley up`` that is running: its process id, API and Redis, and its emulator if it started one."""

    pid: int
    api_url: str
    redis_url: str
    emulator_url: str | None = None


def write(data_dir: Path, running: Running) -> None:
    path = data_dir / RUNFILE
    temporary = path.with_suffix(".tmp")
    # Only its owner may read it: the Redis URL may hold a password.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(running), file)
    temporary.replace(path)


def remove(data_dir: Path) -> None:
    (data_dir / RUNFILE).unlink(missing_ok=True)


def read(data_dir: Path) -> Running | None:
    """The ``parley up`` using ``data_dir``; None when none runs (no file, or its process is gone)."""
    try:
        running = Running(**json.loads((data_dir / RUNFILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return running if pid_alive(running.pid) else None


def with_redis(settings: Settings) -> Settings:
    """``settings`` with the Redis of the ``parley up`` beside it when ``PARLEY_REDIS_URL`` is not set."""
    if settings.redis_url:
        return settings
    running = read(Path(settings.data_dir))
    return settings.model_copy(update={"redis_url": SecretUrl(running.redis_url)}) if running else settings


def beside_up(settings: Settings) -> Settings:
    """``with_redis``, and the emulator of the ``parley up`` beside it when no upstream is set (neither
    ``PARLEY_OPENAI_BASE_URL`` nor an OpenAI key): the processes that create conversations themselves (the
    Slack Socket Mode process, the Discord gateway bot) use the same upstream as its API."""
    settings = with_redis(settings)
    if settings.openai_base_url or settings.openai_api_key is not None:
        return settings
    running = read(Path(settings.data_dir))
    if running is None or not running.emulator_url:
        return settings
    return settings.model_copy(update={"openai_base_url": running.emulator_url,
                                       "openai_api_key": SecretStr("local-emulator")})


def api_url(settings: Settings) -> str:
    """``PARLEY_URL``, else the API of the ``parley up`` beside it, else ``http://127.0.0.1:PARLEY_PORT``."""
    explicit = os.environ.get("PARLEY_URL")
    if explicit:
        return explicit
    running = read(Path(settings.data_dir))
    return running.api_url if running else f"http://127.0.0.1:{settings.port}"
