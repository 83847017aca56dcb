"""Everything parley keeps in Redis, as one text to grep for secrets: every key and every value, whatever
its type."""

from __future__ import annotations

import json

import redis


def _value(client: redis.Redis, key: str) -> object:
    kind = client.type(key)
    if kind == "string":
        return client.get(key)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return sorted(client.smembers(key))
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        return client.xrange(key)
    if kind == "none":
        return None  # deleted since the scan named it (a worker emptied its outbox): nothing left to read
    raise AssertionError(f"{key} has a type this dump does not read: {kind}")


def dump_redis(client: redis.Redis) -> str:
    """``{key: value}`` of the whole database as JSON (``client`` must decode responses); fails on a type it
    cannot read rather than leave a value unread."""
    return json.dumps({key: _value(client, key) for key in sorted(client.scan_iter(count=1000))}, default=str)
