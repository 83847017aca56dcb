"""A real HTTP server on a loopback port that answers from a script, for the client behaviour parley itself
does not easily produce on demand: 503s, dropped connections, streams that only ping or go silent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    """Close the connection without answering."""
    sse: list[str] | None = None
    """Write these chunks as an event stream, ``pause_s`` apart, then close (or hold it open)."""
    pause_s: float = 0.05
    hold_s: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                     json.loads(raw) if raw else None))
        reply = self.server.replies.pop(0) if self.server.replies else self.server.fallback
        if reply.drop:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.sse is not None:
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for chunk in reply.sse:
                    self.wfile.write(chunk.encode())
                    self.wfile.flush()
                    time.sleep(reply.pause_s)
                time.sleep(reply.hold_s)
                return
            payload = json.dumps(reply.body).encode()
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client left first: fine
            pass

    do_GET = do_POST = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replies: list[Reply], fallback: Reply) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies = replies
        self.fallback = fallback
        self.seen: list[Seen] = []


@contextmanager
def tiny_server(*replies: Reply, fallback: Reply | None = None) -> Iterator[_Server]:
    """Serve ``replies`` in order (then ``fallback``, by default a 500); ``.seen`` lists what came in."""
    server = _Server(list(replies), fallback or Reply(500, {"error": {"type": "script", "message": "over"}}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def event(seq: int, type_: str = "turn.started", turn_id: str = "turn_t", **fields: Any) -> str:
    body = {"id": f"{turn_id}.{seq}", "type": type_, "conversation_id": "conv_c", "turn_id": turn_id,
            "seq": seq, "created_at": 1.0, **fields}
    if type_ == "turn.started":
        body.setdefault("attempt", 1)
    return f"id: {seq}\r\nevent: {type_}\r\ndata: {json.dumps(body)}\r\n\r\n"


PING = ": ping\r\n\r\n"
