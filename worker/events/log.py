"""Reading a conversation's durable event stream (async, for the API's SSE and long-poll routes).

Stream entry ids are ``<seq>-0``, so "everything after event N" is the range after ``N-0``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import redis.asyncio

from ..store.keys import SEQ_STREAM_SUFFIX, Keys
from .models import TERMINAL_TYPES

REPLAY_BATCH = 500


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    type: str
    turn_id: str
    payload: str

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES


def _logged(entry_id: str, fields: dict[str, str]) -> LoggedEvent:
    payload = fields["data"]
    body = json.loads(payload)
    return LoggedEvent(seq=int(entry_id.split("-", 1)[0]), type=body["type"], turn_id=body["turn_id"],
                       payload=payload)


async def last_seq(client: redis.asyncio.Redis, keys: Keys, conversation_id: str) -> int:
    entries = await client.xrevrange(keys.events(conversation_id), count=1)
    return int(entries[0][0].split("-", 1)[0]) if entries else 0


async def follow(client: redis.asyncio.Redis, keys: Keys, conversation_id: str, *, after_seq: int,
                 block_ms: int) -> AsyncIterator[LoggedEvent | None]:
    """Every event after ``after_seq``: the stored ones, then live ones as they come. Yields ``None`` when
    ``block_ms`` passes with nothing new (a chance to ping or to give up)."""
    stream = keys.events(conversation_id)
    cursor = f"{after_seq}{SEQ_STREAM_SUFFIX}"
    while True:
        batch = await client.xread({stream: cursor}, count=REPLAY_BATCH, block=block_ms)
        if not batch:
            yield None
            continue
        for entry_id, fields in batch[0][1]:
            cursor = entry_id
            yield _logged(entry_id, fields)


async def replay(client: redis.asyncio.Redis, keys: Keys, conversation_id: str, *,
                 after_seq: int) -> AsyncIterator[LoggedEvent]:
    """The stored events after ``after_seq``, up to the end of the stream as it is now; never blocks."""
    stream = keys.events(conversation_id)
    cursor = f"({after_seq}{SEQ_STREAM_SUFFIX}"
    while True:
        # decode_responses clients (all of parley's) answer str; redis-py's types allow bytes too.
        batch = cast(list[tuple[str, dict[str, str]]],
                     await client.xrange(stream, min=cursor, count=REPLAY_BATCH))
        if not batch:
            return
        for entry_id, fields in batch:
            yield _logged(entry_id, fields)
        cursor = f"({batch[-1][0]}"
