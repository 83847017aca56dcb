"""Which of a turn's events belong to the reply a relay shows: a turn that is tried again writes its reply
from the start, and a relay that takes a turn over replays its events from the beginning of the stream.
Pure."""

from __future__ import annotations

from dataclasses import dataclass

from parley.worker.events.models import TERMINAL_TYPES, Event


def starts_over(event: Event) -> bool:
    """Whether the turn's reply is written again from the start after ``event``: the worker waits to try again
    (``turn.retrying``: the next deltas, or the final text, are a new attempt's), or another worker took the
    turn over (``turn.started`` of a later attempt). What a relay showed of the earlier attempt goes."""
    return event.type == "turn.retrying" or (event.type == "turn.started" and event.attempt > 1)


@dataclass
class Attempts:
    """Counts the start-overs of a turn's events as they are read, against ``on_record``: how many the
    relay had handled when the turn's ``Posted`` record was last written.

    A relay taking the turn over reads its events from the start, so it meets the earlier attempts again;
    their text was already replaced (deleted or edited away) and must not be shown again, if only for a
    moment: the posted messages are the recorded attempt's, and replaying an older one into them garbles
    them (Slack) or flashes the older text (Discord). Only a start-over past the record is a new one."""

    on_record: int = 0
    seen: int = 0

    def replayed(self, event: Event) -> bool:
        """Whether ``event`` is of an attempt the record has already left behind: skip it. A start-over it
        returns False for is a new one: the relay replaces what it shows and records ``seen``."""
        if starts_over(event):
            self.seen += 1
            return self.seen <= self.on_record
        return self.seen < self.on_record and event.type not in TERMINAL_TYPES
