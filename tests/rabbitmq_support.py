"""A real RabbitMQ for tests: ``rabbitmq-server`` as a child process with its own node name, ports and
directories under a temporary folder, so it touches neither a system broker nor /var/lib/rabbitmq.

Where the binary is missing or the node cannot start here, ``RabbitMQ.start`` raises ``Unavailable`` with the
reason; the fixture turns it into a skip. ``.ci/run`` installs the package with apt where it can.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

from parley.worker.local.background import free_port
from parley.worker.local.processes import spawn, stop

START_TIMEOUT_S = 90.0
"""A cold node on a busy 2-core machine boots in 5-15 s; Erlang's first start can take much longer."""


class Unavailable(RuntimeError):
    """RabbitMQ cannot run here; the message says why."""


def server_binary() -> str | None:
    # Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user and its own
    # directories; the script behind it honours the RABBITMQ_* variables for any user.
    for path in ("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _epmd() -> str | None:
    candidates = [shutil.which("epmd"), "/usr/lib/erlang/bin/epmd",
                  *glob.glob("/usr/lib/erlang/erts-*/bin/epmd")]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


class RabbitMQ:
    """One loopback node; ``url`` is its AMQP URL (the default guest user, which RabbitMQ allows only from
    loopback)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    def env(self) -> dict[str, str]:
        base = self.base
        return {
            "HOME": str(base),  # the Erlang cookie
            "RABBITMQ_NODENAME": f"parleytest{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # An epmd of our own on a free port, so we can stop it and leave any system one alone.
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),  # absent: defaults, not /etc/rabbitmq
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        }

    def start(self) -> RabbitMQ:
        binary = server_binary()
        if binary is None:
            raise Unavailable("rabbitmq-server is not installed (apt-get install rabbitmq-server; .ci/run "
                              "installs it where apt-get and root or sudo are available)")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").touch()
        self.process = spawn([binary], env=self.env(), log_path=str(self.log_path))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-1500:] if self.log_path.exists() else ""
                how = ("exited" if self.process.poll() is not None
                       else f"did not answer within {START_TIMEOUT_S:g} s")
                self.stop()
                raise Unavailable(f"rabbitmq-server {how}; last lines of its log:\n{tail}")
            time.sleep(0.5)
        return self

    def _answers(self) -> bool:
        """An AMQP handshake and login succeed (the port alone opens before the broker is ready)."""
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=1) as connection:
                connection.ensure_connection(max_retries=0)
            return True
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout_s=30)
            self.process = None
        epmd = _epmd()
        if epmd:
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10,
                           check=False)

    def __enter__(self) -> RabbitMQ:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
