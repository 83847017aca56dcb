"""``parley up``: every part of parley on one machine, with embedded stand-ins for what is not configured."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from pathlib import Path

from parley.worker.local.background import free_port, wait_http
from parley.worker.local.processes import spawn, stop
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.settings import Settings

READY_TIMEOUT_S = 30.0


class LocalStack:
    def __init__(self, settings: Settings, *, api_port: int = 8000, flower: bool = False) -> None:
        self.settings = settings
        self.api_port = api_port
        self.flower = flower
        self.redis: EmbeddedRedis | None = None
        self.emulator_url: str | None = None
        self.flower_credentials: str | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="parley-up-"))

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        env: dict[str, str] = {}
        redis_url = self.settings.redis_url
        if not redis_url:
            self.redis = EmbeddedRedis(appendonly=True, data_dir=self.workdir / "redis").start()
            redis_url = self.redis.url
            env["PARLEY_REDIS_URL"] = redis_url
        if self.settings.openai_api_key is None and not self.settings.openai_base_url:
            port = free_port()
            self.processes["emulator"] = spawn(["python", "-m", "parley", "emulator", "--port", str(port)])
            self.emulator_url = f"http://127.0.0.1:{port}/v1"
            env["PARLEY_OPENAI_BASE_URL"] = self.emulator_url
            wait_http(f"http://127.0.0.1:{port}/_emulator/state", READY_TIMEOUT_S)
        if self.flower:
            env["PARLEY_WORKER_SEND_TASK_EVENTS"] = "true"
            if self.settings.flower_basic_auth is None:
                self.flower_credentials = f"admin:{secrets.token_urlsafe(12)}"
                env["PARLEY_FLOWER_BASIC_AUTH"] = self.flower_credentials
            self.processes["flower"] = spawn(["python", "-m", "parley", "flower"], env=env)
        self.processes["api"] = spawn(["python", "-m", "parley", "api", "--port", str(self.api_port)], env=env)
        self.processes["worker"] = spawn(["python", "-m", "parley", "worker"], env=env)
        self.processes["beat"] = spawn(["python", "-m", "parley", "beat", "-s",
                                        str(self.workdir / "beat-schedule")], env=env)
        wait_http(f"http://127.0.0.1:{self.api_port}/readyz", READY_TIMEOUT_S)

    def banner(self) -> str:
        lines = [
            "parley is up:",
            f"  API      http://127.0.0.1:{self.api_port}   (docs: /docs)",
            f"  Redis    {self.redis.url + ' (embedded)' if self.redis else self.settings.redis_url}",
            f"  upstream {self.emulator_url + ' (local emulator)' if self.emulator_url else 'OpenAI'}",
            f"  try:     parley send \"hello\" --url http://127.0.0.1:{self.api_port}",
            *([f"  Flower   http://{self.settings.flower_address}:{self.settings.flower_port}"
               + (f"   (basic auth {self.flower_credentials})" if self.flower_credentials else "")]
              if self.flower else []),
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)

    def failed(self) -> str | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name
        return None

    def close(self) -> None:
        for name in ("api", "flower", "beat", "worker", "emulator"):
            process = self.processes.pop(name, None)
            if process is not None:
                stop(process)
        if self.redis is not None:
            self.redis.close()
            self.redis = None

