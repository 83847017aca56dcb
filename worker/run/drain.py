"""The per-conversation loop: claim the lease, run the head turn(s) one at a time, release.

Celery only wakes this up; order and mutual exclusion come from the lease and the inbox in Redis.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from .. import metrics
from ..errors import CircuitOpen, LeaseLost, RetryableUpstreamError, UpstreamError
from ..events.models import event_json
from ..log import get_logger
from ..messages import Turn, TurnError, TurnStatus
from ..store.connections import REDIS_ERRORS
from ..store.lease import LeaseKeeper
from ..store.mailbox import Fenced, Finished, Interrupted, Mailbox, StartedTurn
from ..texting import interrupt
from ..tools.records import ToolRecords
from ..tools.registry import ToolRegistry
from ..tools.session import Paused, ToolSession, offers_tools
from . import faultpoints
from .circuit import Circuit
from .deltas import Deltas
from .json_reply import json_schema_format, parse_reply
from .policy import RetryPolicy
from .retrying import call_with_retries
from .shutdown import HandBack, ShutdownSignal
from .upstream import Reply, Upstream

log = get_logger(__name__)


def worker_id() -> str:
    """Recorded on each finished turn (``host:pid``), so an operator can tell which process handled it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DrainResult:
    claimed: bool
    turns: int
    rewake: bool


class Drainer:
    def __init__(self, mailbox: Mailbox, upstream: Upstream, keeper: LeaseKeeper, policy: RetryPolicy,
                 *, fairness_budget: int, wake: Callable[[str], None],
                 shutdown: ShutdownSignal | None = None, delta_interval_s: float = 0.05,
                 stream: bool = True, relay: Callable[[str], object] | None = None,
                 dequeued: Callable[..., object] | None = None, circuit: Circuit | None = None,
                 registry: ToolRegistry | None = None,
                 wake_later: Callable[[str, float], object] | None = None) -> None:
        # A debounced conversation is woken when its wait ends; without Celery (tests), by a timer.
        self.wake_later = wake_later or (lambda conv, delay_s: threading.Timer(delay_s, wake, [conv]).start())
        self.circuit, self.registry = circuit, registry
        self.delta_interval_s, self.stream = delta_interval_s, stream
        # Both done at once unless the process defers them (worker/store/deferred.py).
        self.relay = relay or mailbox.relay_replies
        self.dequeued = dequeued or mailbox.dequeued
        self.mailbox, self.upstream, self.keeper, self.policy = mailbox, upstream, keeper, policy
        self.shutdown = shutdown or ShutdownSignal()
        self.fairness_budget, self.wake = fairness_budget, wake

    def drain(self, conv: str) -> DrainResult:
        if self.shutdown.requested:
            # Leaving: pass the wake-up on to a worker that stays, without touching the conversation.
            self.wake(conv)
            return DrainResult(claimed=False, turns=0, rewake=True)
        claim = self.mailbox.claim(conv)
        if claim.token is None:
            return DrainResult(claimed=False, turns=0, rewake=False)
        if claim.started is None:  # nothing queued, or not yet (debounced); the lease was not kept
            self._wake_when_due(conv, claim.due_ms)
            return DrainResult(claimed=True, turns=0, rewake=False)
        token = claim.token
        self.keeper.hold(conv, token)
        turns, released, due_ms = 0, False, None
        started: StartedTurn | None = claim.started

        def go_on() -> bool:
            # Asked as each turn finishes, so a shutdown requested meanwhile stops the loop there.
            return turns < self.fairness_budget and not self.shutdown.requested

        try:
            while started is not None:
                turns += 1
                if not started.resumed:
                    folded = len(started.turn.answers or [])  # a merged batch left the queue together
                    self.dequeued(1 + folded)
                    metrics.TURNS_FOLDED.labels(how="merged").inc(folded)
                faultpoints.reached("claimed")
                finished = self._run_turn(conv, token, started, go_on)
                if finished is None:  # handed back
                    break
                released, started, due_ms = finished.released, finished.next, finished.due_ms
        except (Fenced, LeaseLost):
            log.warning("lease_lost_during_drain", conversation_id=conv)
        finally:
            self.keeper.drop(conv)
        if released:
            self._wake_when_due(conv, due_ms)
            return DrainResult(claimed=True, turns=turns, rewake=False)
        # Turns left after the budget go back through the Celery queue, behind other conversations.
        rewake = self.mailbox.release(conv, token)
        if rewake:
            self.wake(conv)
        return DrainResult(claimed=True, turns=turns, rewake=rewake)

    def _wake_when_due(self, conv: str, due_ms: int | None) -> None:
        if due_ms is not None:  # debounced: its turns may start then
            self.wake_later(conv, max(0.0, due_ms / 1000 - time.time()))

    def _run_turn(self, conv: str, token: str, started: StartedTurn, go_on: Callable[[], bool]
                  ) -> Finished | None:
        """Run one turn to its end; the finish also starts the next turn when ``go_on()``. ``None`` when the
        turn was handed back (shutting down)."""
        turn = started.turn
        structlog.contextvars.bind_contextvars(conversation_id=conv, turn_id=turn.id,
                                               attempt=started.attempts)
        if started.resumed:
            metrics.LEASE_RECOVERIES.inc()
        elif started.attempts == 1 and turn.started_at is not None:
            metrics.QUEUE_SECONDS.observe(max(0.0, turn.started_at - turn.created_at))
        began = time.monotonic()
        outcome = "interrupted"
        try:
            if self.policy.dead_letter_on_start(turn.crashes):
                self.mailbox.dead_letter(conv, turn.id)
                metrics.TURNS_DEAD_LETTERED.inc()
                outcome = "dead_lettered"
                return self._fail(conv, token, turn, TurnError(
                    type="dead_lettered", message=f"its worker died {turn.crashes} times while running it"),
                    go_on())
            if started.problem is not None:
                outcome = "failed"
                error = TurnError(type="invalid_record", message=started.problem)
                return self._fail(conv, token, turn, error, go_on())
            faultpoints.reached("running", turn.input)
            try:
                if turn.interrupt_by is not None:  # asked to stop before this owner took it (crash, pause)
                    raise Interrupted(conv)
                reply = self._call_with_retries(conv, token, turn, started)
            except Interrupted:
                outcome = "interrupted"
                return interrupt.stop(self.mailbox, self.upstream.client, self.policy, conv, token, turn)
            except HandBack:
                self.mailbox.hand_back(conv, token, turn.id)
                outcome = "handed_back"
                return None
            except Paused:  # waits for its bot's tool outputs; the lease is already given back
                outcome = "requires_action"
                return None
            except UpstreamError as exc:
                outcome = "failed"
                if exc.retryable:
                    self.mailbox.dead_letter(conv, turn.id)
                    metrics.TURNS_DEAD_LETTERED.inc()
                    outcome = "dead_lettered"
                return self._fail(conv, token, turn, TurnError(type=exc.reason, message=exc.message,
                                                               code=exc.code, status_code=exc.status_code),
                                  go_on())
            except (Fenced, LeaseLost, *REDIS_ERRORS):
                raise  # not this turn's fault: another owner or a later attempt takes it over
            except Exception as exc:  # noqa: BLE001 - a bug must cost one turn, not the conversation
                # Crashing the task would leave the turn in flight: it would be resumed and crash again at
                # every attempt, blocking the turns behind it for minutes (a poison turn).
                log.exception("turn_crashed")
                outcome = "failed"
                return self._fail(conv, token, turn, TurnError(
                    type="internal_error", message=f"parley could not run this turn ({type(exc).__name__}); "
                    "the worker's log has the traceback"), go_on())
            faultpoints.reached("upstream_done")
            finished = self._complete(conv, token, turn, reply, go_on())
            faultpoints.reached("finished")
            outcome = "recovered" if reply.recovered else "completed"
            return finished
        finally:
            log.info("turn_done", outcome=outcome, first_attempt=started.attempts,
                     duration_ms=round((time.monotonic() - began) * 1000, 1))
            structlog.contextvars.unbind_contextvars("conversation_id", "turn_id", "attempt")

    def _call_with_retries(self, conv: str, token: str, turn: Turn, started: StartedTurn) -> Reply:
        def attempt(needs_check: bool) -> Reply:
            return self._attempt(conv, token, turn, needs_check=needs_check)

        reply = call_with_retries(self.policy, self.mailbox, self.shutdown, conv=conv, token=token, turn=turn,
                                  started=started, attempt=attempt)
        fmt = json_schema_format(getattr(turn, "request", None))
        if fmt is not None:
            turn.output_parsed = parse_reply(reply.output_text, fmt)
        return reply

    def _attempt(self, conv: str, token: str, turn: Turn, *, needs_check: bool) -> Reply:
        if self.registry is not None and offers_tools(turn, self.registry):
            return self._tool_attempt(conv, token, turn, needs_check=needs_check)
        if needs_check:
            # An earlier attempt may have reached upstream: take its result rather than appending twice.
            recovered = self.upstream.recover(turn, last_item_id=self.mailbox.last_item_id(conv))
            if recovered is not None:
                log.info("turn_recovered", response_id=recovered.response_id)
                return recovered
        deltas = Deltas(self.mailbox, self.keeper, self.shutdown, conv, token, turn, self.delta_interval_s)

        def on_created(response_id: str) -> None:
            self.mailbox.record(conv, turn.id, token, response_id=response_id)
            turn.response_id = response_id
            faultpoints.reached("response_created")

        reply = self._generate(turn, on_created=on_created, on_delta=deltas.add)
        deltas.flush()
        return reply

    def _tool_attempt(self, conv: str, token: str, turn: Turn, *, needs_check: bool) -> Reply:
        """A turn that offers tools: its rounds (worker/tools/session.py), resumable at any point."""
        assert self.registry is not None
        deltas = Deltas(self.mailbox, self.keeper, self.shutdown, conv, token, turn, self.delta_interval_s)
        tools = self.registry.definitions(getattr(turn, "server_tools", None))

        def on_delta(delta: str) -> None:
            deltas.add(delta)
            faultpoints.reached("tool_final_delta")  # deltas come with the answer, after the tools

        def generate(round_input: list[dict[str, Any]] | None, on_created: Callable[[str], None]) -> Reply:
            reply = self._generate(turn, on_created=on_created,
                                   on_delta=on_delta if round_input else deltas.add, round_input=round_input,
                                   tools=tools)
            if not self.stream and reply.response_id:  # known only at the end without a stream
                on_created(reply.response_id)
            deltas.flush()
            return reply

        session = ToolSession(turn=turn, records=ToolRecords(self.mailbox, conv, token, turn),
                              registry=self.registry, client=self.upstream.client,
                              settings=self.mailbox.settings, checkpoint=self.mailbox.last_item_id(conv),
                              generate=generate, streamed=self.stream)
        return session.run(needs_check=needs_check)

    def _generate(self, turn: Turn, *, on_created: Callable[[str], None], on_delta: Callable[[str], None],
                  **round_: Any) -> Reply:
        """One upstream generation, through the shared circuit of its model: while it is open, wait (an
        uncounted retry) instead of calling; every outcome is reported to it. ``round_``: a tool round's
        input and tools."""
        model = turn.model or self.upstream.settings.model
        if self.circuit is not None and (wait_s := self.circuit.gate(model)) > 0:
            raise CircuitOpen(f"most recent calls to {model} failed; waiting with the other workers",
                              reason="circuit_open", retry_after_s=wait_s)
        began = time.monotonic()
        try:
            if not self.stream:
                reply = self.upstream.generate_whole(turn, **round_)
            else:
                reply = self.upstream.generate(turn, on_created=on_created, on_delta=on_delta, **round_)
        except RetryableUpstreamError as exc:
            if self.circuit is not None and exc.reason != "conversation_locked":
                self.circuit.record(model, ok=False)
            raise
        finally:
            metrics.UPSTREAM_SECONDS.observe(time.monotonic() - began)
        if self.circuit is not None:
            self.circuit.record(model, ok=True)
        return reply

    def _complete(self, conv: str, token: str, turn: Turn, reply: Reply, go_on: bool) -> Finished:
        turn.status = TurnStatus.completed
        turn.worker = worker_id()
        turn.output_text = reply.output_text
        turn.response_id = reply.response_id or turn.response_id
        turn.usage = reply.usage
        turn.completed_at = time.time()
        event = event_json("turn.completed", conversation_id=conv, turn_id=turn.id,
                           event_id=f"{turn.id}.completed", output_text=turn.output_text,
                           output_parsed=turn.output_parsed, response_id=turn.response_id, usage=turn.usage,
                           metadata=turn.metadata)
        finished = self.mailbox.finish(conv, token, turn, event=event, last_item_id=reply.last_item_id,
                                       go_on=go_on)
        metrics.TURNS_COMPLETED.inc()
        self.relay(conv)
        return finished

    def _fail(self, conv: str, token: str, turn: Turn, error: TurnError, go_on: bool) -> Finished:
        turn.status = TurnStatus.failed
        turn.worker = worker_id()
        turn.error = error
        turn.completed_at = time.time()
        event = event_json("turn.failed", conversation_id=conv, turn_id=turn.id, event_id=f"{turn.id}.failed",
                           error=error.model_dump(exclude_none=True), metadata=turn.metadata)
        finished = self.mailbox.finish(conv, token, turn, event=event, last_item_id=None, go_on=go_on)
        metrics.TURNS_FAILED.labels(reason=error.type).inc()
        log.warning("turn_failed", error=error.type, message=error.message)
        self.relay(conv)
        return finished
