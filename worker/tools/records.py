"""The tool loop's records in Redis, all fenced by the conversation's lease: the calls and each round's
response id on the turn's hash, the results in the turn's tool-results hash (first write wins), and the
pause that hands a turn to its bot."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ..events.models import event_json
from ..messages import Turn
from ..store import scripts
from ..store.mailbox import Fenced, Interrupted, Mailbox
from .loop import Call, ToolState


class ToolRecords:
    def __init__(self, mailbox: Mailbox, conv: str, token: str, turn: Turn) -> None:
        self.mailbox, self.conv, self.token, self.turn = mailbox, conv, token, turn

    def state(self) -> ToolState:
        """The loop as recorded: the turn's calls and response ids, and the results stored so far."""
        # No calls recorded, no results either (bot outputs are only taken for recorded calls): no round trip.
        results = (self.mailbox.client.hgetall(self.mailbox.keys.tool_results(self.conv, self.turn.id))
                   if self.turn.tool_calls else {})
        return ToolState(calls=[Call.of(c) for c in self.turn.tool_calls or []], results=dict(results),
                         response_ids=list(self.turn.response_ids or []))

    def calls(self, state: ToolState, new: Sequence[Call] = ()) -> None:
        """Record the calls a response asked for, before any of them runs; then, in the same round trip, the
        ``tool.called`` event of each of ``new``."""
        self.turn.tool_calls = [c.record() for c in state.calls]
        # The response ids go along: without a stream they were only noted in memory (``persist=False``).
        fields = {"tool_calls": json.dumps(self.turn.tool_calls),
                  "response_ids": json.dumps(state.response_ids)}
        if not new:
            self.mailbox.record(self.conv, self.turn.id, self.token, **fields)
            return
        events = [self._event("tool.called", f"{self.turn.id}.tool.{c.call_id}.called", call_id=c.call_id,
                              name=c.name, arguments=c.arguments, runs=c.runs) for c in new]
        self.mailbox.record_and_publish(self.conv, self.token, self.turn.id, fields, events)

    def response_id(self, state: ToolState, round_: int, response_id: str, *, persist: bool = True) -> None:
        """The response of ``round_`` is known. Streamed, it is known at ``response.created`` and recorded at
        once, so a resumed turn waits for that response; without a stream it is known at the end, and goes
        with the next record (the calls, or the finish)."""
        ids = state.response_ids[:round_] + [response_id]
        state.response_ids = self.turn.response_ids = ids
        self.turn.response_id = response_id
        if persist:
            self.mailbox.record(self.conv, self.turn.id, self.token, response_id=response_id,
                                response_ids=json.dumps(ids))

    def results(self, results: dict[str, str], *, completed: dict[str, Any] | None = None) -> None:
        """Record outputs (first write wins: a call recorded once is never run again); with ``completed``
        (the fields of a ``tool.completed`` event, ``call_id`` among them), publish that event after them in
        the same round trip, or raise ``Interrupted`` as ``publish`` would (the results stay recorded)."""
        if not results:
            return
        k, s = self.mailbox.keys, self.mailbox.settings
        event = "" if completed is None else self._event(
            "tool.completed", f"{self.turn.id}.tool.{completed['call_id']}.completed", **completed)
        pairs: list[scripts.Arg] = [v for pair in results.items() for v in pair]
        keys = [k.lease(self.conv), k.tool_results(self.conv, self.turn.id), k.seq(self.conv),
                k.events(self.conv), k.turn(self.conv, self.turn.id)]
        added = scripts.TOOL_RESULTS(self.mailbox.client, keys,
                                     [self.token, s.retention_s, s.stream_maxlen, event, *pairs])
        if added == -1:
            raise Fenced(self.conv)
        if added == -2:
            raise Interrupted(self.conv)

    def pause(self, calls: list[Call]) -> float:
        """Hand the turn to its bot (``requires_action``) and give the lease back; returns the deadline."""
        k, s, turn = self.mailbox.keys, self.mailbox.settings, self.turn
        deadline = time.time() + s.tool_output_timeout_s
        action: dict[str, Any] = {"tool_calls": [
            {"call_id": c.call_id, "name": c.name, "arguments": c.arguments} for c in calls]}
        event = event_json("turn.requires_action", conversation_id=self.conv, turn_id=turn.id,
                           event_id=f"{turn.id}.requires_action.{calls[0].round}", required_action=action,
                           action_deadline=round(deadline, 3), metadata=turn.metadata or None)
        keys = [k.lease(self.conv), k.inflight(self.conv), k.turn(self.conv, turn.id), k.seq(self.conv),
                k.events(self.conv), k.state(self.conv)]
        args: list[scripts.Arg] = [self.token, turn.id, json.dumps(action), f"{deadline:.3f}", event,
                                   s.stream_maxlen, s.retention_s]
        seq = scripts.PAUSE(self.mailbox.client, keys, args)
        if seq == -1:
            raise Fenced(self.conv)
        if seq == -2:
            raise Interrupted(self.conv)
        return deadline

    def _event(self, type_: Any, event_id: str, **fields: Any) -> str:
        return event_json(type_, conversation_id=self.conv, turn_id=self.turn.id, event_id=event_id, **fields)

    def publish(self, type_: Any, event_id: str, **fields: Any) -> None:
        self.mailbox.publish(self.conv, self.token, type_, turn_id=self.turn.id, event_id=event_id, **fields)
