"""A streamed reply's deltas, joined per interval and published as ``response.delta`` events while the
stream runs; each delta also checks that the lease is still held and that no shutdown asks to stop."""

from __future__ import annotations

import time

from ..errors import LeaseLost
from ..messages import Turn
from ..store.lease import LeaseKeeper
from ..store.mailbox import Mailbox
from .policy import DeltaCoalescer
from .shutdown import ShutdownSignal


class Deltas:
    def __init__(self, mailbox: Mailbox, keeper: LeaseKeeper, shutdown: ShutdownSignal, conv: str, token: str,
                 turn: Turn, interval_s: float) -> None:
        self.mailbox, self.keeper, self.shutdown = mailbox, keeper, shutdown
        self.conv, self.token, self.turn = conv, token, turn
        self.coalescer = DeltaCoalescer(interval_s)
        self.sent = 0

    def add(self, delta: str) -> None:
        if self.keeper.lost(self.conv):
            raise LeaseLost(self.conv)
        self.shutdown.check()
        ready = self.coalescer.add(delta, time.monotonic())
        if ready:
            self._publish(ready)

    def flush(self) -> None:
        rest = self.coalescer.flush(time.monotonic())
        if rest:
            self._publish(rest)

    def _publish(self, text: str) -> None:
        self.sent += 1
        self.mailbox.publish(self.conv, self.token, "response.delta", turn_id=self.turn.id, delta=text,
                             event_id=f"{self.turn.id}.delta.{self.turn.attempts}.{self.sent}")
