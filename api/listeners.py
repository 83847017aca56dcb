"""Redis connections of listeners (SSE streams, long-polls): one each, and a cap on how many a process holds.

A blocked XREAD holds its connection, so each listener gets its own, closed with it (a client that goes away
takes its connection along instead of growing the shared pool). Without a cap, one key holder opening streams
could use up Redis ``maxclients``, after which even restarting workers could not connect.
"""

from __future__ import annotations

import anyio
import redis.asyncio

from .errors import ApiError

CLIENT_NAME = "parley-sse"
"""Set on each listener connection (``CLIENT LIST`` shows them)."""
RETRY_AFTER_S = 5


class Listeners:
    def __init__(self, redis_url: str, *, limit: int) -> None:
        self.redis_url = redis_url
        self.limit = limit
        self.open = 0

    def check(self) -> None:
        """503 ``too_many_listeners`` when the process holds its cap. Asked before a response starts; the
        connection itself is made by the stream once it runs, so one that never runs holds nothing."""
        if self.open >= self.limit:
            raise ApiError(503, "too_many_listeners", f"This API process already serves {self.limit} event "
                           "streams and long-polls; retry shortly or use another process.",
                           headers={"Retry-After": str(RETRY_AFTER_S)})

    def connect(self) -> redis.asyncio.Redis:
        """A connection for one listener; the caller closes it with :meth:`close` in a ``finally``."""
        self.open += 1  # one event loop per process: no lock needed
        return redis.asyncio.Redis.from_url(self.redis_url, decode_responses=True,
                                            single_connection_client=True, client_name=CLIENT_NAME)

    async def close(self, client: redis.asyncio.Redis) -> None:
        # Runs while the listener's task is being cancelled (the HTTP client left): shield it, or anyio
        # cancels the close too and the connection leaks.
        with anyio.CancelScope(shield=True):
            try:
                await client.aclose()
            finally:
                self.open -= 1
