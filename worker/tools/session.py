"""One turn's tool loop, resumable at any point: generate, record the calls, run the server tools (recording
each result), hand bot calls to the bot, send every output in one request, until a response has no calls.

Exactly once, across crashes: a call's result is recorded (fenced) before any output goes upstream, so a
resumed turn never runs a recorded call again and sends the recorded result; a tool whose worker died before
its result was recorded runs again (at least once: hence its idempotency key). After any doubt (a retry, a
resumed turn) the conversation's items decide what was stored: outputs are sent only for calls that are stored
and unanswered, never twice, and a turn that gives up closes its pending calls so the conversation stays
usable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai

from ..errors import PermanentUpstreamError, RetryableUpstreamError
from ..messages import Turn
from ..run import faultpoints
from ..run.upstream import Reply, last_user_text
from ..settings import Settings
from . import conversation
from .context import ToolContext
from .loop import (
    Answered,
    Call,
    NotSent,
    Pending,
    StillRunning,
    ToolState,
    calls_in,
    error_output,
    outputs_input,
    read_items,
)
from .records import ToolRecords
from .registry import ToolRegistry
from .runner import Outcome, run_calls

Generate = Callable[[list[dict[str, Any]] | None, Callable[[str], None]], Reply]
"""``generate(round_input, on_created)``: one upstream generation of a round (``None``: the turn's input)."""


class Paused(Exception):  # noqa: N818 - not an error: the turn waits for its bot
    """The turn now waits for its bot's tool outputs; its lease was given back."""


def offers_tools(turn: Turn, registry: ToolRegistry) -> bool:
    """Whether the turn runs the loop: it offers server tools or function tools of its own."""
    return bool(server_tool_names(turn, registry)) or bool(bot_tools(turn))


def server_tool_names(turn: Turn, registry: ToolRegistry) -> set[str]:
    return {t.name for t in registry.offered(getattr(turn, "server_tools", None))}


def bot_tools(turn: Turn) -> list[dict[str, Any]]:
    request = getattr(turn, "request", None) or {}
    return [t for t in request.get("tools") or [] if t.get("type") == "function"]


class ToolSession:
    def __init__(self, *, turn: Turn, records: ToolRecords, registry: ToolRegistry, client: openai.OpenAI,
                 settings: Settings, checkpoint: str | None, generate: Generate,
                 streamed: bool = True) -> None:
        self.streamed = streamed
        self.turn, self.records, self.registry, self.client = turn, records, registry, client
        self.settings, self.checkpoint, self.generate = settings, checkpoint, generate
        self.server = server_tool_names(turn, registry)
        self.bot = {t["name"] for t in bot_tools(turn) if t.get("name")}

    def run(self, *, needs_check: bool) -> Reply:
        state = self.records.state()
        if needs_check:
            answered = self._reconcile(state)
            if answered is not None:
                return answered
        while True:
            pending = state.pending()
            round_input = None
            if pending:
                self._answer(state, pending)
                round_input = outputs_input(pending, state.results)
                faultpoints.reached("tool_results_recorded")
            next_round = pending[0].round + 1 if pending else 0
            reply = self.generate(round_input, lambda rid, r=next_round: self._created(state, r, rid))
            calls = calls_in(list(reply.output), round_=next_round, server_tools=self.server,
                             bot_tools=self.bot)
            faultpoints.reached("tool_calls_streamed" if calls else "tool_final_streamed")
            if not calls:
                return reply
            if next_round >= self.settings.max_tool_rounds:
                self._give_up(calls, {}, "tool_rounds_exceeded",
                              f"the model asked for tools again after {next_round} rounds "
                              f"(PARLEY_MAX_TOOL_ROUNDS={self.settings.max_tool_rounds})")
            state.calls += calls
            self.records.calls(state, calls)  # and their tool.called events, in the same round trip

    def _created(self, state: ToolState, round_: int, response_id: str) -> None:
        self.records.response_id(state, round_, response_id, persist=self.streamed)
        faultpoints.reached("response_created" if round_ == 0 else "tool_outputs_sent")

    def _answer(self, state: ToolState, pending: list[Call]) -> None:
        """Make sure every pending call has a recorded output: run the server ones not yet recorded, and
        hand the bot's to the bot (or close them at its deadline)."""
        todo = [c for c in state.missing() if c.runs == "server"]
        if todo:
            def done(outcome: Outcome) -> None:
                faultpoints.reached("tool_ran")
                # The result, then its tool.completed event, in one round trip.
                self.records.results({outcome.call_id: outcome.output}, completed={
                    "call_id": outcome.call_id, "name": _name(pending, outcome.call_id),
                    "duration_ms": outcome.duration_ms, "error": outcome.error})
                state.results[outcome.call_id] = outcome.output

            run_calls(todo, self.registry, self._context, done)
        waiting = [c for c in state.missing() if c.runs == "bot"]
        if not waiting:
            return
        deadline = self.turn.action_deadline
        if deadline is not None and time.time() >= deadline:
            self._give_up(pending, state.results, "tool_outputs_timeout",
                          f"the bot sent no outputs for {', '.join(c.call_id for c in waiting)} within "
                          f"{self.settings.tool_output_timeout_s:g} s")
        self.records.pause([c for c in pending if c.runs == "bot"])
        raise Paused

    def _context(self, call: Call) -> ToolContext:
        return ToolContext(turn_id=self.turn.id, conversation_id=self.turn.conversation_id,
                           call_id=call.call_id, metadata=dict(self.turn.metadata))

    def _give_up(self, calls: list[Call], results: dict[str, str], reason: str, message: str) -> None:
        """Close ``calls`` (recorded results, error outputs for the rest) without running the model, so no
        call of the conversation is left without an output, then fail the turn."""
        outputs = {c.call_id: results.get(c.call_id) or error_output(f"{reason}: {message}") for c in calls}
        self.records.results(outputs)
        conversation.append_outputs(self.client, self.turn.conversation_id, outputs_input(calls, outputs))
        raise PermanentUpstreamError(message, reason=reason)

    def _reconcile(self, state: ToolState) -> Reply | None:
        """After a doubt: wait for the last recorded round to end, then read what the conversation holds."""
        if state.response_ids:
            conversation.finished_response(self.client, state.response_ids[-1])
        items = conversation.items_after(self.client, self.turn.conversation_id, self.checkpoint)
        view = read_items(items, last_user_text(self.turn.input))
        if isinstance(view, StillRunning):
            raise RetryableUpstreamError("the turn's input is stored but its answer is not yet",
                                         reason="still_running")
        if isinstance(view, Answered):
            return Reply(output_text=view.text, response_id=(state.response_ids or [None])[-1], usage=None,
                         last_item_id=view.last_item_id, recovered=True)
        if isinstance(view, NotSent):
            state.calls = []  # nothing of the turn was stored: start over (recorded results stay unused)
            return None
        assert isinstance(view, Pending)
        known = {c.call_id for c in state.calls}
        stored = [item for item in view.calls if item["call_id"] not in known]
        if stored:  # stored before this process could record them (it died at the end of the stream)
            state.calls += calls_in(stored, round_=view.rounds_stored - 1, server_tools=self.server,
                                    bot_tools=self.bot)
            self.records.calls(state)
        return None


def _name(calls: list[Call], call_id: str) -> str:
    return next((c.name for c in calls if c.call_id == call_id), "")
