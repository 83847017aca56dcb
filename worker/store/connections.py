"""Redis clients sized to the process's concurrency.

redis-py's default pool raises ``MaxConnectionsError`` at once when exhausted (research.md §9); a blocking
pool waits for a free connection instead.
"""

from __future__ import annotations

import redis
import redis.asyncio

from ..settings import Settings

POOL_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 10.0


def sync_client(settings: Settings) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url_required, max_connections=settings.redis_max_connections, timeout=POOL_TIMEOUT_S,
        decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


def async_client(settings: Settings) -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis_url_required, max_connections=settings.redis_max_connections, timeout=POOL_TIMEOUT_S,
        decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )
    return redis.asyncio.Redis(connection_pool=pool)
