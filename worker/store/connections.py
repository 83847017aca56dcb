"""Redis clients sized to the process's concurrency, for one Redis or (``PARLEY_REDIS_CLUSTER``) a cluster.

redis-py's default pool raises ``MaxConnectionsError`` at once when exhausted (research.md §9); a blocking
pool waits for a free connection instead. On a cluster each node gets such a pool; the async cluster client
has no blocking pool, so there ``redis_max_connections`` per node is a hard cap.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio

from ..settings import Settings

POOL_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 10.0

CLUSTER_CLIENTS = (redis.RedisCluster, redis.asyncio.RedisCluster)
"""What :func:`is_cluster` recognises; the scripts and the API's fan-out hub choose their cluster variant by
it, so the single-Redis path costs no flag lookup."""


REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, redis.exceptions.RedisClusterException)
"""What a Redis outage raises. The cluster client adds its own errors outside ``RedisError`` (a slot no master
serves during a failover, no reachable node): code that rides out an outage catches both."""


def is_cluster(client: object) -> bool:
    return isinstance(client, CLUSTER_CLIENTS)


def _options(settings: Settings) -> dict[str, Any]:
    return {"max_connections": settings.redis_max_connections, "decode_responses": True,
            "socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": SOCKET_TIMEOUT_S}


def sync_client(settings: Settings) -> redis.Redis:
    if settings.redis_cluster:
        cluster = redis.RedisCluster.from_url(
            settings.redis_url_required, connection_pool_class=redis.BlockingConnectionPool,
            timeout=POOL_TIMEOUT_S, health_check_interval=30, **_options(settings))
        # Not a subclass of redis.Redis, but it has every command parley sends (scripts, pipelines included).
        return cast(redis.Redis, cluster)
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url_required, timeout=POOL_TIMEOUT_S, health_check_interval=30, **_options(settings))
    return redis.Redis(connection_pool=pool)


def async_client(settings: Settings) -> redis.asyncio.Redis:
    if settings.redis_cluster:
        cluster = redis.asyncio.RedisCluster.from_url(settings.redis_url_required, **_options(settings))
        return cast(redis.asyncio.Redis, cluster)
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis_url_required, timeout=POOL_TIMEOUT_S, health_check_interval=30, **_options(settings))
    return redis.asyncio.Redis(connection_pool=pool)
