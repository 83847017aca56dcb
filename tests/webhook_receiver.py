"""A webhook receiver for the tests and the benchmark, run as a process of its own: it verifies each POST with
the ``standardwebhooks`` library (the secret in ``WEBHOOK_SECRET``) and appends the verified ``webhook-id``
to ``--out``, one a line; a POST that fails verification gets 400 and its id goes to ``--rejected``.

    python tests/webhook_receiver.py --port 8765 --out ids.txt [--fail-until EPOCH] [--hang] [--delay-s S]

``--fail-until``: answer 500 (after verifying, without recording) until that time. ``--hang``: never answer.
``GET /health`` answers 200 once the server listens.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rejected", default=os.devnull)
    parser.add_argument("--fail-until", type=float, default=0.0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args()
    webhook = Webhook(os.environ["WEBHOOK_SECRET"])
    lock = threading.Lock()

    def append(path: str, line: str) -> None:
        with lock, open(path, "a") as f:
            f.write(line + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: object) -> None:
            pass

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            self._answer(200)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if args.hang:
                time.sleep(3600)
            headers = dict(self.headers.items())
            try:
                webhook.verify(body, headers)
            except WebhookVerificationError:
                append(args.rejected, headers.get("webhook-id", "?"))
                self._answer(400)
                return
            if args.delay_s:
                time.sleep(args.delay_s)
            if time.time() < args.fail_until:
                self._answer(500)
                return
            append(args.out, headers["webhook-id"])
            self._answer(204)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
