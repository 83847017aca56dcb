"""When a turn's reply starts over (api/bridges/relay.py ``starts_over``): a retry, or a later attempt's start;
the first attempt's start and the text are not."""

from __future__ import annotations

import json
import time

from parley.api.bridges.relay import starts_over
from parley.worker.events.models import Event, parse_event


def event(type_: str, seq: int, **fields: object) -> Event:
    return parse_event(json.dumps({"id": f"t.{seq}", "type": type_, "conversation_id": "conv_a", "turn_id": "t",
                                   "seq": seq, "created_at": time.time(), **fields}))


def test_a_start_over_is_a_retry_or_a_later_attempt() -> None:
    """Of a turn tried once again: the retry and the second attempt's start; not the first start, the deltas
    or the end."""
    events = [event("turn.started", 1, attempt=1), event("response.delta", 2, delta="old"),
              event("turn.retrying", 3, cause="http_5xx", attempt=1, retry_at=0.0),
              event("turn.started", 4, attempt=2), event("response.delta", 5, delta="new"),
              event("turn.completed", 6, output_text="new")]
    assert [starts_over(e) for e in events] == [False, False, True, True, False, False]
