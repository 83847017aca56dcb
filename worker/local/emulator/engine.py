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

from . import model, objects
from .faults import EmulatorConfig, Fault
from .objects import JSON
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
    events: list[JSON] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    cancel_requested: bool = False

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
              record: RequestRecord) -> ResponseRun:
        response_id = objects.new_id("resp")
        if conversation_id is not None:
            self.store.lock(conversation_id, response_id)
        background = bool(body.get("background"))
        obj = objects.response(
            response_id=response_id, created_at=objects.now_s(),
            status="queued" if background else "in_progress",
            model=str(body.get("model") or "gpt-emulator"), instructions=body.get("instructions"),
            metadata=body.get("metadata") or {}, conversation_id=conversation_id, background=background,
            store=body.get("store", True) is not False,
        )
        record.response_id = response_id
        run = ResponseRun(obj=obj, input_items=input_items, conversation_id=conversation_id, record=record)
        self.runs[response_id] = run
        task = asyncio.get_running_loop().create_task(self._generate(run, fault))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return run

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
        user_text = next((model.text_of(i) for i in reversed(run.input_items) if i["role"] == "user"), "")
        number = earlier + model.user_turn_count(run.input_items)
        return model.reply_text(turn_number=number, user_text=user_text or last_text,
                                words=self.config.reply_words)

    async def _generate(self, run: ResponseRun, fault: Fault) -> None:
        obj = run.obj
        await run.emit("response.created", response=dict(obj, status="in_progress"))
        obj["status"] = "in_progress"
        await run.emit("response.in_progress", response=dict(obj))
        text = self._reply(run)
        deltas = model.chunk(text, self.config.chunk_chars)
        ttft_ms = fault.ttft_ms if fault.ttft_ms is not None else fault.latency_ms
        spread_s = max(0, fault.latency_ms - ttft_ms) / 1000 / max(1, len(deltas))
        await asyncio.sleep(ttft_ms / 1000)
        if run.done:
            return
        item_id = objects.new_id("msg")
        location = {"item_id": item_id, "output_index": 0, "content_index": 0}
        await run.emit("response.output_item.added", output_index=0,
                       item=objects.assistant_message(item_id, "", status="in_progress"))
        await run.emit("response.content_part.added", part=objects.output_text_part(""), **location)
        for delta in deltas:
            await run.emit("response.output_text.delta", delta=delta, logprobs=[], **location)
            pause = spread_s + self.config.delta_interval_ms / 1000
            if pause:
                await asyncio.sleep(pause)
            if run.done:
                return
        if fault.kind == "fail":
            await self._finish(run, "failed")
            return
        await run.emit("response.output_text.done", text=text, logprobs=[], **location)
        await run.emit("response.content_part.done", part=objects.output_text_part(text), **location)
        message = objects.assistant_message(item_id, text)
        await run.emit("response.output_item.done", output_index=0, item=message)
        obj["output"] = [message]
        input_tokens = sum(model.count_tokens(model.text_of(i)) for i in run.input_items)
        obj["usage"] = objects.usage(input_tokens, model.count_tokens(text))
        await self._finish(run, "completed")

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
