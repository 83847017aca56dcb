"""tests/slack_fake.py's fake Slack Web API as a process of its own for the Slack bench (so its CPU is not the
load generator's), with ``GET /_fake/stops``: every ``chat.stopStream`` Slack answered ``ok``, with its
message's thread and the wall-clock time the fake answered it, and each thread's first ``chat.startStream``.

    python bench/slack_fake_app.py PORT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import uvicorn  # noqa: E402
from slack_fake import FakeSlack  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402


def main() -> None:
    fake = FakeSlack()
    app = fake.app()
    wall_offset = time.time() - time.monotonic()  # the fake records time.monotonic() per call

    async def stops(request: Request) -> JSONResponse:
        with fake.lock:
            rows, starts = [], {}
            for call in fake.calls:
                if call.method == "chat.startStream" and call.ok:
                    starts.setdefault(str(call.params["thread_ts"]), call.at + wall_offset)
                if call.method != "chat.stopStream" or not call.ok:
                    continue
                message = fake.messages.get(str(call.params["ts"]))
                rows.append({"channel": call.params["channel"], "ts": call.params["ts"],
                             "at": call.at + wall_offset,
                             "thread_ts": message.thread_ts if message else None})
            counts: dict[str, int] = {}
            for call in fake.calls:
                counts[call.method] = counts.get(call.method, 0) + 1
        return JSONResponse({"stops": rows, "starts": starts, "calls": counts})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app.router.routes += [Route("/_fake/stops", stops), Route("/_fake/ready", ready)]
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
