"""The worker side of the mailbox protocol: typed wrappers around the Lua scripts, one conversation each."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from ..events.models import EventType, event_json
from ..events.replies import relay
from ..messages import Turn
from ..settings import Settings
from . import scripts
from .keys import Keys


@dataclass(frozen=True)
class StartedTurn:
    turn: Turn
    attempts: int
    resumed: bool
    problem: str | None = None
    """Set when the stored record does not parse (``Turn.parse``): the turn is failed, not run."""

    @property
    def turn_id(self) -> str:
        return self.turn.id


@dataclass(frozen=True)
class Claim:
    """``token`` is None when another worker owns the conversation; ``started`` is None when there was
    nothing to do (and the lease was not kept)."""

    token: str | None
    started: StartedTurn | None
    due_ms: int | None = None
    """Set when the conversation's turns are debounced until then: wake it at that time."""


@dataclass(frozen=True)
class Finished:
    seq: int
    next: StartedTurn | None
    released: bool
    """True when nothing was left and the lease went back in the same script."""
    due_ms: int | None = None
    """Set (with ``released``) when the next turns are debounced until then: wake the conversation then."""


class Fenced(Exception):
    """The lease is no longer ours; whatever we were about to write was not written."""


class Interrupted(Exception):
    """A newer turn of the conversation asks the running one to stop (double texting's ``interrupt``)."""


class Mailbox:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.keys = Keys(settings.key_prefix)
        self.settings = settings

    def _start_args(self, conv: str) -> list[str | int]:
        k = self.keys
        return [k.turn_prefix(conv), f"{time.time():.6f}", conv, self.settings.stream_maxlen,
                self.settings.retention_s]

    @staticmethod
    def _started(conv: str, result: list[Any]) -> StartedTurn:
        """From ``[turn id, attempts, resumed, field, value, ...]`` as start_next (Lua) returns it."""
        fields = dict(zip(result[3::2], result[4::2], strict=True))
        turn, problem = Turn.parse(fields, conv, result[0])
        return StartedTurn(turn=turn, attempts=int(result[1]), resumed=bool(result[2]), problem=problem)

    def claim(self, conv: str) -> Claim:
        """Take the lease and start the next turn, in one round trip."""
        k = self.keys
        result = scripts.CLAIM(self.client,
                               [k.lease(conv), k.fence(conv), k.state(conv), k.inflight(conv), k.inbox(conv),
                                k.seq(conv), k.events(conv), k.conversation(conv), k.outbox(conv)],
                               [self.settings.lease_ttl_ms, *self._start_args(conv)])
        if result[0] == 0:
            return Claim(token=None, started=None)
        if result[0] == 3:
            return Claim(token=str(result[1]), started=None, due_ms=int(result[2]))
        if result[0] == 1:
            return Claim(token=str(result[1]), started=None)
        return Claim(token=str(result[1]), started=self._started(conv, result[2:]))

    def next_turn(self, conv: str, token: str) -> StartedTurn | None:
        k = self.keys
        result = scripts.NEXT_TURN(
            self.client, [k.lease(conv), k.inflight(conv), k.inbox(conv), k.seq(conv), k.events(conv),
                          k.state(conv), k.outbox(conv)],
            [token, *self._start_args(conv)])
        if result[0] == -1:
            raise Fenced(conv)
        if result[0] in (0, 3):  # nothing, or not yet (debounced): the caller releases, which re-wakes
            return None
        return self._started(conv, result[1:])

    def load(self, conv: str, turn_id: str) -> Turn:
        return Turn.parse(self.client.hgetall(self.keys.turn(conv, turn_id)), conv, turn_id)[0]

    def last_item_id(self, conv: str) -> str | None:
        value = self.client.hget(self.keys.state(conv), "last_item_id")
        return str(value) if value else None

    def record(self, conv: str, turn_id: str, token: str, *, count_attempt: bool = False,
               **fields: str | None) -> int:
        """Set fields on the in-flight turn (fenced); returns its attempt count. Raises ``Interrupted`` (with
        the fields recorded) when a newer turn asks it to stop."""
        attempts = scripts.RECORD(self.client, [self.keys.lease(conv), self.keys.turn(conv, turn_id)],
                                  [token, int(count_attempt), *scripts.flatten(dict(fields))])
        if attempts == -1:
            raise Fenced(conv)
        if attempts == -2:
            raise Interrupted(conv)
        return int(attempts)

    def publish(self, conv: str, token: str, type_: EventType, *, turn_id: str, event_id: str,
                **fields: object) -> int:
        k = self.keys
        keys = [k.lease(conv), k.seq(conv), k.events(conv), k.turn(conv, turn_id)]
        seq = scripts.PUBLISH(self.client, keys, [
            token, event_json(type_, conversation_id=conv, turn_id=turn_id, event_id=event_id, **fields),
            self.settings.stream_maxlen, self.settings.retention_s])
        if seq == -1:
            raise Fenced(conv)
        if seq == -2:  # not published: the turn is to stop
            raise Interrupted(conv)
        return int(seq)

    def record_and_publish(self, conv: str, token: str, turn_id: str, fields: dict[str, str | None],
                           events: list[str]) -> int:
        """``record`` then ``publish`` of each of ``events`` (built with ``event_json``), in one round trip
        (record_publish.lua); returns the last seq. Raises ``Fenced`` (nothing written) or ``Interrupted``
        (the fields recorded, no event published) like them."""
        k = self.keys
        pairs = scripts.flatten(dict(fields))
        keys = [k.lease(conv), k.turn(conv, turn_id), k.seq(conv), k.events(conv)]
        args = [token, self.settings.stream_maxlen, self.settings.retention_s, len(pairs), *pairs, *events]
        seq = scripts.RECORD_PUBLISH(self.client, keys, args)
        if seq == -1:
            raise Fenced(conv)
        if seq == -2:
            raise Interrupted(conv)
        return int(seq)

    def finish(self, conv: str, token: str, turn: Turn, *, event: str, last_item_id: str | None,
               go_on: bool = False) -> Finished:
        """Record the final state of ``turn`` (already updated), clear in-flight, publish ``event``; with
        ``go_on``, also start the next turn (or give the lease back when there is none)."""
        k = self.keys
        result = scripts.FINISH(
            self.client,
            [k.lease(conv), k.inflight(conv), k.turn(conv, turn.id), k.state(conv), k.seq(conv),
             k.events(conv), k.outbox(conv), k.inbox(conv)],
            [token, turn.id, event, self.settings.stream_maxlen, self.settings.retention_s,
             last_item_id or "", int(go_on), *self._start_args(conv), *scripts.flatten(dict(turn.to_hash()))])
        if result[0] < 0:
            raise Fenced(conv)
        return self._finished(conv, result)

    def _finished(self, conv: str, result: list[Any]) -> Finished:
        if result[1] == 1:
            return Finished(seq=int(result[0]), next=self._started(conv, result[2:]), released=False)
        if result[1] == 3:
            return Finished(seq=int(result[0]), next=None, released=True, due_ms=int(result[2]))
        return Finished(seq=int(result[0]), next=None, released=result[1] == 2)

    def interrupt(self, conv: str, token: str, turn_id: str) -> Finished:
        """Put the stopped ``turn_id`` back at the head of the conversation (interrupt.lua), to be answered
        with the turns that interrupted it, and start the next turn (that batch)."""
        k = self.keys
        result = scripts.INTERRUPT(
            self.client,
            [k.lease(conv), k.inflight(conv), k.turn(conv, turn_id), k.inbox(conv), k.seq(conv),
             k.events(conv), k.state(conv), k.outbox(conv), k.tool_results(conv, turn_id)],
            [token, turn_id, *self._start_args(conv)])
        if result[0] < 0:
            raise Fenced(conv)
        return self._finished(conv, result)

    def relay_replies(self, conv: str) -> int:
        return relay(self.client, self.keys, conv, maxlen=self.settings.replies_maxlen)

    def release(self, conv: str, token: str) -> bool:
        """Give the lease back; ``True`` when work is left and a wake-up must be sent."""
        k = self.keys
        return scripts.RELEASE(self.client, [k.lease(conv), k.inbox(conv), k.inflight(conv), k.state(conv)],
                               [token, int(time.time() * 1000)]) == 1

    def rekick(self, conv: str) -> int:
        k = self.keys
        return int(scripts.REKICK(self.client,
                                  [k.lease(conv), k.inbox(conv), k.inflight(conv), k.state(conv)],
                                  [int(time.time() * 1000), int(self.settings.hint_retry_s * 1000)]))

    def hand_back(self, conv: str, token: str, turn_id: str) -> None:
        k = self.keys
        if scripts.HAND_BACK(self.client, [k.lease(conv), k.inflight(conv), k.turn(conv, turn_id)],
                             [token, turn_id]) != 1:
            raise Fenced(conv)

    def dequeued(self, count: int = 1) -> None:
        """Turns left the queue (they started, or were merged into the one that did): keep the global
        queued-turns counter in step."""
        self.client.decr(self.keys.queued_total, count)

    def requeued(self) -> None:
        """An interrupted turn went back to the queue (counted again when its batch starts)."""
        self.client.incr(self.keys.queued_total)

    def dead_letter(self, conv: str, turn_id: str) -> None:
        self.client.zadd(self.keys.dead_letters, {f"{conv}/{turn_id}": time.time()})
