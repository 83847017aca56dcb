"""The turns a bridge accepted, announced to its relays (``Keys.bridge_turns``)."""

from __future__ import annotations

import redis.asyncio

from parley.worker.store.keys import Keys

MAXLEN = 100_000
"""Entries kept (approximately): far more than the turns in flight; the acknowledged ones are history."""


async def announce(client: redis.asyncio.Redis, keys: Keys, platform: str, *, turn_id: str,
                   conversation_id: str) -> None:
    """After the turn is enqueued and before the platform gets its 2xx: a crash in between makes the
    platform retry, the retry finds the same turn (idempotency key) and announces it again, and the relay
    handles a turn once whatever the number of entries."""
    await client.xadd(keys.bridge_turns(platform), {"turn_id": turn_id, "conversation_id": conversation_id},
                      maxlen=MAXLEN, approximate=True)
