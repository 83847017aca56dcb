"""The reaper: re-wakes conversations whose wake-up was lost or whose owner died.

A dead owner's lease simply expires; the next owner resumes its in-flight turn (``next_turn.lua``), so the
reaper's only job is to make sure such a conversation gets a wake-up at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..store import scripts
from ..store.mailbox import Mailbox

BATCH = 500
IDLE_FORGET_S = 600.0
"""An idle conversation leaves the active index this long after its last enqueue."""


@dataclass(frozen=True)
class ReapResult:
    scanned: int
    woken: int
    forgotten: int
    queued: int


def reap(mailbox: Mailbox, wake: Callable[[str], None], *, now_ms: int | None = None) -> ReapResult:
    keys = mailbox.keys
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    cutoff = now_ms - int(IDLE_FORGET_S * 1000)
    scanned = woken = forgotten = queued = inflight = ready = 0
    cursor = 0
    while True:
        cursor, entries = mailbox.client.zscan(keys.active, cursor, count=BATCH)
        pipe = mailbox.client.pipeline(transaction=False)
        for conv, _ in entries:
            pipe.llen(keys.inbox(conv))
            pipe.llen(keys.outbox(conv))
            pipe.exists(keys.inflight(conv))
            pipe.exists(keys.lease(conv))
        lengths = pipe.execute()
        queued += sum(lengths[0::4])
        inflight += sum(lengths[2::4])
        ready += sum(1 for waiting, busy, owned in zip(lengths[0::4], lengths[2::4], lengths[3::4],
                                                       strict=True)
                     if (waiting or busy) and not owned)
        for (conv, _), unrelayed in zip(entries, lengths[1::4], strict=True):
            if unrelayed:
                # Replies a crash left between a turn's finish and its copy to the replies stream.
                mailbox.relay_replies(conv)
        for conv, score in entries:
            scanned += 1
            verdict = mailbox.rekick(conv)
            if verdict == 1:
                wake(conv)
                woken += 1
            elif verdict == 2 and score <= cutoff:
                forgotten += scripts.FORGET(mailbox.client, [keys.active], [conv, int(score)])
        if cursor == 0:
            # The global counter drifts when a process dies between a script and its INCR/DECR; re-anchor it.
            mailbox.client.set(keys.queued_total, queued)
            mailbox.client.hset(keys.stats, mapping={"queued": queued, "inflight": inflight, "ready": ready,
                                                     "active": scanned, "updated_at": now_ms / 1000})
            return ReapResult(scanned=scanned, woken=woken, forgotten=forgotten, queued=queued)
