"""What a new message does under each policy, which waiting turns one request answers, and when a debounced
turn may start. Pure: the mailbox scripts apply these decisions atomically; nothing here reads Redis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..messages import TurnStatus
from .policy import TextingPolicy

COMPLETED, FAILED, CANCELLED = (TurnStatus.completed.value, TurnStatus.failed.value,
                                TurnStatus.cancelled.value)
MERGED, SUPERSEDED, INTERRUPTED = (TurnStatus.merged.value, TurnStatus.superseded.value,
                                   TurnStatus.interrupted.value)
TERMINAL = (COMPLETED, FAILED, CANCELLED, MERGED, SUPERSEDED, INTERRUPTED)
"""Every turn ends in exactly one of these; the last three name the turn that answered it
(``answered_by``)."""

BUSY = "conversation_busy"


@dataclass(frozen=True)
class Arrival:
    """What a newly posted turn does. ``accepted`` False: refused with ``error`` (409), nothing enqueued."""

    accepted: bool = True
    error: str | None = None
    supersede: tuple[str, ...] = ()
    interrupt: str | None = None


def on_arrival(policy: TextingPolicy, *, queued: Sequence[str], running: str | None) -> Arrival:
    """The decision for a turn arriving while ``queued`` turns wait (arrival order) and ``running`` runs.

    ``latest`` supersedes the waiting turns at once (they will never run, so their terminal events go out
    now); ``interrupt`` stops the running one, whose input is then answered with the new one (and with any
    waiting ones, see :func:`plan`); ``merge`` and ``enqueue`` only queue it: which turns share a request is
    decided when the next one starts, since more may arrive meanwhile."""
    if policy.mode == "reject":
        return Arrival(accepted=False, error=BUSY) if queued or running else Arrival()
    if policy.mode == "latest":
        return Arrival(supersede=tuple(queued))
    if policy.mode == "interrupt" and running is not None:
        return Arrival(interrupt=running)
    return Arrival()


@dataclass(frozen=True)
class Plan:
    """One upstream request: ``answer`` is the turn whose reply it is; ``inputs`` the turns whose inputs it
    sends, in arrival order; ``ends`` the terminal status of every other turn it settles."""

    answer: str
    inputs: tuple[str, ...]
    ends: dict[str, str] = field(default_factory=dict)


def plan(policy: TextingPolicy, queued: Sequence[str], interrupted: Sequence[str] = ()) -> Plan:
    """The next request of a conversation whose waiting turns are ``queued`` (arrival order, at least one),
    after the ``interrupted`` turns (stopped before they finished, their inputs not yet answered).

    The newest turn answers a merged request: the reply follows the last message, which is what a chat user
    reads it as, and a bot that shows one reply per answered turn puts it under that message."""
    if not queued:
        raise ValueError("a plan needs at least one queued turn")
    if policy.mode in ("enqueue", "reject") and not interrupted:
        return Plan(answer=queued[0], inputs=(queued[0],))
    if policy.mode == "latest" and not interrupted:
        newest = queued[-1]
        return Plan(answer=newest, inputs=(newest,), ends=dict.fromkeys(queued[:-1], SUPERSEDED))
    together = (*interrupted, *queued)
    newest = together[-1]
    ends = dict.fromkeys(interrupted, INTERRUPTED)
    ends.update(dict.fromkeys(queued[:-1], MERGED))
    return Plan(answer=newest, inputs=together, ends=ends)


def debounce_deadline(policy: TextingPolicy, *, first_ms: int, last_ms: int) -> int | None:
    """When the waiting turns may start (ms since the epoch): ``debounce_ms`` after the last message, but no
    later than ``debounce_max_ms`` after the first one; None when the policy does not wait."""
    if not policy.waits:
        return None
    deadline = last_ms + policy.debounce_ms
    if policy.debounce_max_ms is not None:
        deadline = min(deadline, first_ms + policy.debounce_max_ms)
    return deadline
