"""``parley up``: every part of parley on one machine, with embedded stand-ins for what is not configured.

Everything it keeps is in one data directory: Redis's append-only file and log (``redis/``), one log per
process (``logs/``), beat's schedule, and ``up.json`` for the commands run beside it (discovery.py).
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from parley.worker.local.background import free_port, http_ok
from parley.worker.local.processes import spawn, stop_all
from parley.worker.local.redis_server import EmbeddedRedis
from parley.worker.log import redact_url
from parley.worker.settings import Settings

from . import discovery

READY_TIMEOUT_S = 60.0
TAIL_LINES = 8
"""Lines of a dead process's log quoted when it takes the stack down."""
UP_WORKER_NICE = 19
"""The worker's niceness under ``parley up`` unless PARLEY_WORKER_NICE is set (bench/busy_ingress.py)."""
STOP_ORDER = (("api",), ("worker", "beat", "flower", "webhooks"), ("emulator",))
"""The API first (no new turns), then what uses Redis and the upstream, then the emulator; Redis last."""
STOP_TIMEOUT_S = 30.0


class StackError(RuntimeError):
    """``parley up`` cannot start or cannot go on; the message says why in one line."""


@dataclass(frozen=True)
class Upstream:
    emulator: bool
    description: str
    reason: str


def choose_upstream(settings: Settings, *, force_emulator: bool) -> Upstream:
    if force_emulator:
        ignored = " (ignoring the OpenAI key that is set)" if settings.openai_api_key else ""
        return Upstream(True, "the local OpenAI emulator", f"--emulator was given{ignored}")
    if settings.openai_base_url:
        return Upstream(False, settings.openai_base_url, "PARLEY_OPENAI_BASE_URL is set")
    if settings.openai_api_key is not None:
        names = ("PARLEY_OPENAI_API_KEY", "OPENAI_API_KEY")
        name = next((n for n in names if os.environ.get(n)), "a key in .env")
        return Upstream(False, "real OpenAI (api.openai.com, billed)",
                        f"{name} is set; `parley up --emulator` uses the local emulator instead")
    return Upstream(True, "the local OpenAI emulator", "no OPENAI_API_KEY is set")


def port_busy(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound now (as uvicorn and tornado bind: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Child:
    """One process of the stack; its output goes to the terminal (prefixed by its name) and to its log."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log_path: Path, out: TextIO) -> None:
        self.name, self.process, self.log_path, self.out = name, process, log_path, out
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._pump = threading.Thread(target=self._copy, name=f"log-{name}", daemon=True)
        self._pump.start()

    def _copy(self) -> None:
        assert self.process.stdout is not None
        with self.log_path.open("ab") as log:
            for raw in self.process.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip()
                self.tail.append(line)
                try:
                    self.out.write(f"{self.name:<8} | {line}\n")
                    self.out.flush()
                except (OSError, ValueError):  # the terminal is gone: keep draining, or the child blocks
                    pass

    def join(self) -> None:
        self._pump.join(timeout=5)


class LocalStack:
    def __init__(self, settings: Settings, *, data_dir: Path, api_port: int, flower: bool = False,
                 force_emulator: bool = False, stop: threading.Event | None = None,
                 out: TextIO = sys.stderr) -> None:
        self.settings = settings
        self.data_dir = data_dir.resolve()
        self.api_port = api_port
        self.flower = flower
        self.upstream = choose_upstream(settings, force_emulator=force_emulator)
        self.stop = stop or threading.Event()
        self.out = out
        self.redis: EmbeddedRedis | None = None
        self.emulator_url: str | None = None
        self.flower_credentials: str | None = None
        self.children: dict[str, Child] = {}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def redis_url(self) -> str:
        if self.redis:
            return self.redis.url
        return self.settings.redis_url_required if self.settings.redis_url else ""

    def check(self) -> None:
        """Before anything starts: the data directory is free and every fixed port can be bound."""
        running = discovery.read(self.data_dir)
        if running is not None:
            raise StackError(f"another parley up (pid {running.pid}) is using {self.data_dir}; stop it, or "
                             "pass --data-dir")
        ports = [("API", "127.0.0.1", self.api_port, "--port or PARLEY_PORT")]
        if self.flower:
            ports.append(("Flower", self.settings.flower_address, self.settings.flower_port,
                          "PARLEY_FLOWER_PORT"))
        for what, host, port, how in ports:
            if port_busy(host, port):
                raise StackError(f"port {port} ({what}) on {host} is already in use; choose another with "
                                 f"{how}")

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
        """Start every part and wait until the API is ready; returns early when ``stop`` is set meanwhile."""
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        env = {"PYTHONUNBUFFERED": "1"}
        if not self.settings.redis_url:
            self.redis = EmbeddedRedis(appendonly=True, data_dir=self.data_dir / "redis").start()
            env["PARLEY_REDIS_URL"] = self.redis.url
        if self.upstream.emulator:
            port = free_port()
            self.emulator_url = f"http://127.0.0.1:{port}/v1"
            # The emulator's own key, so an OpenAI key set in the environment is never sent to it.
            env |= {"PARLEY_OPENAI_BASE_URL": self.emulator_url, "PARLEY_OPENAI_API_KEY": "local-emulator"}
            self._spawn("emulator", "emulator", "--port", str(port), "--state-file",
                        str(self.data_dir / "emulator.json"), env=env)
            if not self._wait_ready(f"http://127.0.0.1:{port}/_emulator/state"):
                return
        if self.flower:
            env["PARLEY_WORKER_SEND_TASK_EVENTS"] = "true"
            if self.settings.flower_basic_auth is None:
                self.flower_credentials = f"admin:{secrets.token_urlsafe(12)}"
                env["PARLEY_FLOWER_BASIC_AUTH"] = self.flower_credentials
            self._spawn("flower", "flower", env=env)
        self._spawn("api", "api", "--host", "127.0.0.1", "--port", str(self.api_port), env=env)
        # One machine for all: the worker yields CPU to the API's requests.
        given = "worker_nice" in self.settings.model_fields_set
        worker_env = env if given else {**env, "PARLEY_WORKER_NICE": str(UP_WORKER_NICE)}
        self._spawn("worker", "worker", env=worker_env)
        self._spawn("beat", "beat", "-s", str(self.data_dir / "beat-schedule"), env=env)
        # The webhook dispatcher, signing with the configured secret or one kept in the data dir.
        self._spawn("webhooks", "webhooks", "run",
                    env={**env, "PARLEY_WEBHOOK_SECRET": self.webhook_secret()})
        if self._wait_ready(f"{self.api_url}/readyz"):
            discovery.write(self.data_dir, discovery.Running(os.getpid(), self.api_url, self.redis_url,
                                                             self.emulator_url or None))

    def webhook_secret(self) -> str:
        if self.settings.webhook_secret is not None:
            return self.settings.webhook_secret.get_secret_value()
        path = self.data_dir / "webhook-secret"
        if not path.exists():
            from parley.worker.webhooks.signing import generate_secret

            path.touch(mode=0o600)
            path.write_text(generate_secret() + "\n")
        return path.read_text().strip()

    def _spawn(self, name: str, *argv: str, env: dict[str, str]) -> None:
        process = spawn(["python", "-m", "parley", *argv], env=env, pipe=True)
        self.children[name] = Child(name, process, self.data_dir / "logs" / f"{name}.log", self.out)

    def _wait_ready(self, url: str) -> bool:
        """True once ``url`` answers 200; False when a stop was asked for; StackError when a part died."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not http_ok(url):
            if self.stop.is_set():
                return False
            failure = self.failure()
            if failure:
                raise StackError(failure)
            if time.monotonic() > deadline:
                raise StackError(f"{url} did not answer within {READY_TIMEOUT_S:.0f}s; logs in "
                                 f"{self.data_dir}")
            self.stop.wait(0.1)
        return not self.stop.is_set()

    def failure(self) -> str | None:
        """A message naming the first part that exited, how, and its log's last lines; None if all run."""
        if self.redis is not None and self.redis.process is not None:
            code = self.redis.process.poll()
            if code is not None:
                return self._died("redis", code, _last_lines(self.redis.log_path), self.redis.log_path)
        for name, child in self.children.items():
            code = child.process.poll()
            if code is not None:
                child.join()
                return self._died(name, code, list(child.tail), child.log_path)
        return None

    def _died(self, name: str, code: int, tail: list[str], log_path: Path) -> str:
        quoted = "".join(f"\n    {line}" for line in tail)
        return (f"{name} died ({exit_description(code)}); stopping everything. Last lines of {log_path}:"
                f"{quoted}")

    def banner(self) -> str:
        lines = [
            "parley is up:",
            f"  API      {self.api_url}   (docs: /docs)",
            f"  Redis    {redact_url(self.redis_url)}{' (embedded)' if self.redis else ''}",
            *([f"  broker   {redact_url(self.settings.broker_url.get_secret_value())}"]
              if self.settings.broker_url else []),
            f"  upstream {self.emulator_url or self.upstream.description}"
            f"{' (local emulator)' if self.emulator_url else ''}",
            f"  data     {self.data_dir}",
            "  try:     parley send \"hello\"   or   parley chat",
            "  webhooks signed with " + ("PARLEY_WEBHOOK_SECRET" if self.settings.webhook_secret else
                                         f"the secret in {self.data_dir / 'webhook-secret'}"),
            *([f"  Flower   http://{self.settings.flower_address}:{self.settings.flower_port}"
               + (f"   (basic auth {self.flower_credentials})" if self.flower_credentials else "")]
              if self.flower else []),
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)

    def close(self) -> None:
        """Stop every part in STOP_ORDER, Redis last, and remove ``up.json``."""
        for group in STOP_ORDER:
            children = [self.children.pop(name) for name in group if name in self.children]
            stop_all([child.process for child in children], timeout_s=STOP_TIMEOUT_S)
            for child in children:
                child.join()
        if self.redis is not None:
            self.redis.close()
            self.redis = None
        discovery.remove(self.data_dir)


def _last_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    except OSError:
        return []
