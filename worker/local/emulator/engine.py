"""Responses: each one runs as an asyncio task that writes its SSE events to a log; HTTP streams follow it.

Decoupling the run from the HTTP connection is what lets a dropped stream, a background response and a
``GET /responses/{id}?stream=true`` replay all behave like OpenAI's: the response goes on server-side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from . import model, objects, options, tools
from .faults import EmulatorConfig, Fault
from .index import ItemIndex
from .objects import JSON
from .options import Offer
from .store import ApiError, RequestRecord, Store

TERMINAL = ("completed", "failed", "cancelled", "incomplete")


class StreamDropped(Exception):
    """Raised inside an HTTP stream to cut the connection, as a network failure would."""


@dataclass
class ResponseRun:
    obj: JSON
    input_items: list[JSON]
    conversation_id: str | None
    record: RequestRecord
    offer: Offer = field(default_factory=Offer)
    history: ItemIndex = field(default_factory=ItemIndex)
    """The conversation's item index when the request came (the rules and the plan read it)."""
    events: list[JSON] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    cancel_requested: bool = False
    abandoned: bool = False
    """The client's stream went away before the end (foreground responses only)."""

    @property
    def done(self) -> bool:
        return self.obj["status"] in TERMINAL

    async def emit(self, type_: str, **payload: Any) -> None:
        self.events.append({"type": type_, "sequence_number": len(self.events), **payload})
        async with self.changed:
            self.changed.notify_all()

    async def follow(self, starting_after: int = -1) -> AsyncIterator[JSON]:
        index = starting_after + 1
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.done:
                return
            async with self.changed:
                await self.changed.wait_for(lambda seen=index: seen < len(self.events) or self.done)


@dataclass
class Engine:
    store: Store
    config: EmulatorConfig
    runs: dict[str, ResponseRun] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def get(self, response_id: str) -> ResponseRun:
        run = self.runs.get(response_id)
        if run is None:
            raise ApiError(404, f"Response with id '{response_id}' not found.", param="response_id")
        return run

    def start(self, *, body: JSON, input_items: list[JSON], conversation_id: str | None, fault: Fault,
              record: RequestRecord, offer: Offer | None = None, given_ids: list[str] | None = None
              ) -> ResponseRun:
        offer = offer or Offer()
        response_id = objects.new_id("resp")
        if conversation_id is not None:
            self.store.lock(conversation_id, response_id)
        try:
            history = self._check(conversation_id, input_items, given_ids or [])
        except ApiError:
            if conversation_id is not None:
                self.store.unlock(conversation_id, response_id)
            record.status, record.ended_at = "rejected", time.time()
            raise
        background = bool(body.get("background"))
        obj = objects.response(
            response_id=response_id, created_at=objects.now_s(),
            status="queued" if background else "in_progress",
            model=str(body.get("model") or "gpt-emulator"), instructions=body.get("instructions"),
            metadata=body.get("metadata") or {}, conversation_id=conversation_id, background=background,
            store=body.get("store", True) is not False, tools=offer.tools, tool_choice=offer.tool_choice,
            parallel_tool_calls=offer.parallel_tool_calls, text=offer.text,
        )
        record.response_id = response_id
        run = ResponseRun(obj=obj, input_items=input_items, conversation_id=conversation_id, record=record,
                          offer=offer, history=history)
        self.runs[response_id] = run
        task = asyncio.get_running_loop().create_task(self._generate(run, fault))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return run

    def _check(self, conversation_id: str | None, input_items: list[JSON], given_ids: list[str]) -> ItemIndex:
        """OpenAI's rules for items and calls, checked while holding the conversation's lock."""
        conv = self.store.conversations.get(conversation_id) if conversation_id else None
        with self.store.mutex:
            history = conv.index if conv is not None else ItemIndex()
            tools.check_duplicates(history, given_ids)
            tools.check_outputs(history, input_items)
        return history

    async def cancel(self, run: ResponseRun) -> None:
        if not run.obj["background"]:
            raise ApiError(400, "Only responses created with background=true can be cancelled.",
                           param="response_id")
        run.cancel_requested = True
        if not run.done:
            await self._finish(run, "cancelled")

    async def wait(self, run: ResponseRun) -> None:
        async for _ in run.follow():
            pass

    # --- the run itself ------------------------------------------------------------------------------

    def _reply(self, run: ResponseRun) -> str:
        earlier, last_text = self.store.history(run.conversation_id) if run.conversation_id else (0, "")
        user_text = next((model.text_of(i) for i in reversed(run.input_items) if i.get("role") == "user"), "")
        number = earlier + model.user_turn_count(run.input_items)
        plain = tools.tool_results(run.history, run.input_items) or model.reply_text(
            turn_number=number, user_text=user_text or last_text, words=self.config.reply_words)
        return options.reply_text(run.offer, plain, user_text or last_text)

    async def _generate(self, run: ResponseRun, fault: Fault) -> None:
        obj = run.obj
        await run.emit("response.created", response=dict(obj, status="in_progress"))
        obj["status"] = "in_progress"
        await run.emit("response.in_progress", response=dict(obj))
        calls = tools.plan(run.offer, run.history, run.input_items)
        text = "" if calls else self._reply(run)
        pieces = [model.slices(c.arguments, self.config.chunk_chars) for c in calls] or [
            model.chunk(text, self.config.chunk_chars)]
        ttft_ms = fault.ttft_ms if fault.ttft_ms is not None else fault.latency_ms
        spread_s = max(0, fault.latency_ms - ttft_ms) / 1000 / max(1, sum(map(len, pieces)))
        await asyncio.sleep(ttft_ms / 1000)
        if run.done:
            return
        # A dropped stream stops the response here unless the switch says it completes server-side; for calls,
        # by default it never completes (the calls are not stored: tools-and-platforms.md §5).
        stop_on_drop = fault.kind == "drop" and run.record.stream and not (
            self.config.drop_completes and (not calls or self.config.drop_stores_calls))
        stops = _Stops(pause_s=spread_s + self.config.delta_interval_ms / 1000, on_drop=stop_on_drop,
                       fail=fault.kind == "fail",
                       abandon_fails=(not self.config.drop_stores_calls) if calls
                       else self.config.close_stops_text)
        if calls:
            output = await self._stream_calls(run, calls, pieces, stops)
        else:
            output = await self._stream_text(run, text, pieces[0], stops)
        if output is None or run.done:
            return
        obj["output"] = output
        input_tokens = sum(model.count_tokens(model.text_of(i)) for i in run.input_items)
        obj["usage"] = objects.usage(input_tokens, model.count_tokens(text or "".join(
            c.arguments for c in calls)))
        await self._finish(run, "completed")

    async def _stream_text(self, run: ResponseRun, text: str, deltas: list[str], stops: _Stops
                           ) -> list[JSON] | None:
        item_id = objects.new_id("msg")
        location = {"item_id": item_id, "output_index": 0, "content_index": 0}
        await run.emit("response.output_item.added", output_index=0,
                       item=objects.assistant_message(item_id, "", status="in_progress"))
        await run.emit("response.content_part.added", part=objects.output_text_part(""), **location)
        if not await self._deltas(run, "response.output_text.delta", deltas, stops,
                                  logprobs=[], **location):
            return None
        await run.emit("response.output_text.done", text=text, logprobs=[], **location)
        await run.emit("response.content_part.done", part=objects.output_text_part(text), **location)
        message = objects.assistant_message(item_id, text)
        await run.emit("response.output_item.done", output_index=0, item=message)
        return [message]

    async def _stream_calls(self, run: ResponseRun, calls: list[tools.Planned], pieces: list[list[str]],
                            stops: _Stops) -> list[JSON] | None:
        """Each call: output_item.added, arguments deltas, arguments.done, output_item.done (§1.2)."""
        output = []
        for index, (call, deltas) in enumerate(zip(calls, pieces, strict=True)):
            item = objects.function_call(objects.new_id("fc"), objects.new_call_id(), call.name,
                                         call.arguments)
            location = {"item_id": item["id"], "output_index": index}
            await run.emit("response.output_item.added", output_index=index,
                           item=dict(item, arguments="", status="in_progress"))
            if not await self._deltas(run, "response.function_call_arguments.delta", deltas, stops,
                                      **location):
                return None
            await run.emit("response.function_call_arguments.done", name=call.name, arguments=call.arguments,
                           **location)
            await run.emit("response.output_item.done", output_index=index, item=item)
            output.append(item)
            run.record.function_calls.append(
                {"name": call.name, "call_id": item["call_id"], "arguments": call.arguments})
        return output

    async def _deltas(self, run: ResponseRun, type_: str, deltas: list[str], stops: _Stops,
                      **location: Any) -> bool:
        """Emit the deltas; False when the response ended instead (dropped, failed, cancelled meanwhile)."""
        for delta in deltas:
            await run.emit(type_, delta=delta, **location)
            if stops.on_drop:
                await self._finish(run, "failed")
            if stops.pause_s:
                await asyncio.sleep(stops.pause_s)
            if run.abandoned and stops.abandon_fails and not run.done:
                await self._finish(run, "failed")
            if run.done:
                return False
        if stops.fail:
            await self._finish(run, "failed")
            return False
        return True

    async def _finish(self, run: ResponseRun, status: str) -> None:
        obj = run.obj
        if status == "completed" and run.conversation_id is not None:
            conv = self.store.conversations.get(run.conversation_id)
            if conv is not None:
                # Input items, then output items, appended only once the response completes
                # (openai-api.md §5).
                self.store.append_items(conv, run.input_items + obj["output"])
        obj["status"] = status
        if status == "completed":
            obj["completed_at"] = objects.now_s()
        if status == "failed":
            obj["error"] = {"code": "server_error", "message": "The model failed to generate a response."}
        run.record.status = status
        run.record.ended_at = time.time()
        if run.conversation_id is not None:
            self.store.unlock(run.conversation_id, obj["id"])
        terminal_event = {"completed": "response.completed", "failed": "response.failed",
                          "incomplete": "response.incomplete"}.get(status)
        if terminal_event:
            await run.emit(terminal_event, response=dict(obj))
        else:
            async with run.changed:
                run.changed.notify_all()



@dataclass(frozen=True)
class _Stops:
    pause_s: float
    on_drop: bool
    """End the response (failed) after the first delta: the client's stream dropped there."""
    fail: bool
    """End it with ``response.failed`` after the deltas (the ``fail`` fault)."""
    abandon_fails: bool
    """A client that goes away while calls stream ends the response too, as the drop fault does."""
