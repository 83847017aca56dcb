"""Reading a conversation's durable event stream (async, for the API's SSE and long-poll routes, whose live
reads go through the API's fan-out hub, ``parley.api.fanout``).

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


def parse_entry(entry_id: str, fields: dict[str, str]) -> LoggedEvent:
    payload = fields["data"]
    body = json.loads(payload)
    return LoggedEvent(seq=int(entry_id.split("-", 1)[0]), type=body["type"], turn_id=body["turn_id"],
                       payload=payload)


async def last_seq(client: redis.asyncio.Redis, keys: Keys, conversation_id: str) -> int:
    entries = await client.xrevrange(keys.events(conversation_id), count=1)
    return int(entries[0][0].split("-", 1)[0]) if entries else 0


def entry_id(seq: int) -> str:
    """The stream entry id of event ``seq``."""
    return f"{seq}{SEQ_STREAM_SUFFIX}"


async def read_after(client: redis.asyncio.Redis, stream: str, *, after_seq: int,
                     count: int = REPLAY_BATCH) -> list[LoggedEvent]:
    """Up to ``count`` stored events of ``stream`` after ``after_seq``, oldest first (one XRANGE: never
    blocks)."""
    # decode_responses clients (all of parley's) answer str; redis-py's types allow bytes too.
    batch = cast(list[tuple[str, dict[str, str]]],
                 await client.xrange(stream, min=f"({entry_id(after_seq)}", count=count))
    return [parse_entry(id_, fields) for id_, fields in batch]


async def replay(client: redis.asyncio.Redis, keys: Keys, conversation_id: str, *,
                 after_seq: int) -> AsyncIterator[LoggedEvent]:
    """The stored events after ``after_seq``, up to the end of the stream as it is now; never blocks."""
    stream = keys.events(conversation_id)
    while batch := await read_after(client, stream, after_seq=after_seq):
        for event in batch:
            yield event
        after_seq = batch[-1].seq
