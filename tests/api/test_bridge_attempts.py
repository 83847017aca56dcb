"""Which of a turn's events a relay shows (api/bridges/attempts.py): a start-over is a retry or a later
attempt's start, and a relay that took the turn over skips the attempts its record has left behind."""

from __future__ import annotations

import json
import time

from parley.api.bridges.attempts import Attempts, starts_over
from parley.worker.events.models import Event, parse_event


def event(type_: str, seq: int, **fields: object) -> Event:
    return parse_event(json.dumps({"id": f"t.{seq}", "type": type_, "conversation_id": "conv_a", "turn_id": "t",
                                   "seq": seq, "created_at": time.time(), **fields}))


RETRY = {"cause": "http_5xx", "attempt": 1, "retry_at": 0.0}
EVENTS = [event("turn.started", 1, attempt=1), event("response.delta", 2, delta="old"),
          event("turn.retrying", 3, **RETRY), event("turn.started", 4, attempt=2),
          event("response.delta", 5, delta="new"), event("turn.completed", 6, output_text="new")]


def test_a_start_over_is_a_retry_or_a_later_attempt() -> None:
    """The first attempt's start is not one; the retry and the second attempt's start are."""
    assert [starts_over(e) for e in EVENTS] == [False, False, True, True, False, False]


def test_a_fresh_relay_skips_nothing() -> None:
    """With nothing on record every event counts, and both start-overs are new ones."""
    attempts = Attempts()
    assert [attempts.replayed(e) for e in EVENTS] == [False] * 6 and attempts.seen == 2


def test_a_takeover_skips_the_attempts_on_record() -> None:
    """The record says the reply started over twice: everything up to the second start-over is skipped; the
    second attempt's text and the terminal event are shown."""
    attempts = Attempts(on_record=2)
    assert [attempts.replayed(e) for e in EVENTS] == [True, True, True, True, False, False]


def test_a_start_over_past_the_record_is_a_new_one() -> None:
    """Recorded after one start-over (the relay died before it handled the second): the second is new."""
    attempts = Attempts(on_record=1)
    assert [attempts.replayed(e) for e in EVENTS] == [True, True, True, False, False, False]
    assert attempts.seen == 2


def test_a_terminal_event_is_never_skipped() -> None:
    """A record ahead of the stream (events trimmed or rebuilt) still lets the turn's end through."""
    attempts = Attempts(on_record=5)
    assert not attempts.replayed(event("turn.completed", 9, output_text="x"))
