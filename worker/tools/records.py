"""The tool loop's records in Redis, all fenced by the conversation's lease: the calls and each round's
response id on the turn's hash, the results in the turn's tool-results hash (first write wins), and the
pause that hands a turn to its bot."""

from __future__ import annotations

import json
import time
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

    def calls(self, state: ToolState) -> None:
        """Record the calls a response asked for, before any of them runs."""
        self.turn.tool_calls = [c.record() for c in state.calls]
        # The response ids go along: without a stream they were only noted in memory (``persist=False``).
        self.mailbox.record(self.conv, self.turn.id, self.token, tool_calls=json.dumps(self.turn.tool_calls),
                            response_ids=json.dumps(state.response_ids))

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

    def results(self, results: dict[str, str]) -> None:
        """Record outputs (first write wins: a call recorded once is never run again)."""
        if not results:
            return
        k, s = self.mailbox.keys, self.mailbox.settings
        pairs: list[scripts.Arg] = [v for pair in results.items() for v in pair]
        keys = [k.lease(self.conv), k.tool_results(self.conv, self.turn.id)]
        added = scripts.TOOL_RESULTS(self.mailbox.client, keys, [self.token, s.retention_s, *pairs])
        if added == -1:
            raise Fenced(self.conv)

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

    def publish(self, type_: Any, event_id: str, **fields: Any) -> None:
        self.mailbox.publish(self.conv, self.token, type_, turn_id=self.turn.id, event_id=event_id, **fields)
