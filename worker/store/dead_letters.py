"""Dead-lettered turns: list, show, requeue, drop (``parley dead-letter ...``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from ..messages import Turn, turn_nonce
from ..settings import Settings
from . import scripts
from .keys import Keys, turn_index_ttl_s


@dataclass(frozen=True)
class DeadLetter:
    conversation_id: str
    turn_id: str
    at: float

    @property
    def ref(self) -> str:
        return f"{self.conversation_id}/{self.turn_id}"


class DeadLetters:
    def __init__(self, client: redis.Redis, keys: Keys, *, retention_s: int | None = None) -> None:
        self.client = client
        self.keys = keys
        self.retention_s = retention_s or int(Settings.model_fields["retention_s"].default)

    def list(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.client.zrange(self.keys.dead_letters, 0, limit - 1, withscores=True)
        return [DeadLetter(*str(member).split("/", 1), at=float(score)) for member, score in rows]

    def find(self, turn_id: str) -> DeadLetter | None:
        return next((d for d in self.list(limit=100_000) if d.turn_id == turn_id), None)

    def show(self, letter: DeadLetter) -> Turn | None:
        fields = self.client.hgetall(self.keys.turn(letter.conversation_id, letter.turn_id))
        return Turn.parse(fields, letter.conversation_id, letter.turn_id)[0] if fields else None

    def requeue(self, letter: DeadLetter) -> bool:
        """Queue the turn again at the tail of its conversation; ``True`` when a wake-up must be sent."""
        k, conv = self.keys, letter.conversation_id
        status, *rest = scripts.REQUEUE(
            self.client, [k.turn(conv, letter.turn_id), k.inbox(conv), k.lease(conv), k.state(conv),
                          k.conversation(conv), k.turn_index(conv)],
            [letter.turn_id, int(time.time() * 1000), turn_nonce(letter.turn_id),
             turn_index_ttl_s(self.retention_s)])
        if status != 1:
            raise ValueError(f"turn {letter.turn_id} is not a failed turn of an existing conversation")
        self.client.zadd(k.active, {conv: int(time.time() * 1000)})
        self.client.incr(k.queued_total)
        self.drop(letter)
        return bool(rest[0])

    def drop(self, letter: DeadLetter) -> None:
        self.client.zrem(self.keys.dead_letters, letter.ref)
