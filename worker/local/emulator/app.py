"""The emulator's HTTP surface: OpenAI's Conversations and Responses paths under ``/v1``, plus ``/_emulator``
debug routes (state summary, items, request log, reset, fault config) for tests and people."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import inputs, objects, options, tools
from .auth import KeyCheck
from .engine import Engine, ResponseRun, StreamDropped
from .faults import EmulatorConfig, FaultPlanner, inject_http_fault, parse_spec
from .index import ItemIndex
from .objects import JSON
from .store import ApiError, RequestRecord, Store

Handler = Callable[[Request], Awaitable[Response]]
DELTAS = ("response.output_text.delta", "response.function_call_arguments.delta")
"""A ``drop`` fault cuts the connection after the first of these."""


class Emulator:
    """Everything one emulator instance holds; ``app`` is its ASGI application."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.store = Store()
        self.faults = FaultPlanner(self.config)
        self.engine = Engine(self.store, self.config)
        self.app = Starlette(routes=self._routes(), exception_handlers={
            ApiError: _api_error, HTTPException: _http_error, Exception: _crash},
            middleware=[Middleware(KeyCheck, config=self.config)])

    def reset(self) -> None:
        self.store.reset()
        self.engine.runs.clear()

    def _routes(self) -> list[Route]:
        return [
            Route("/v1/conversations", self.create_conversation, methods=["POST"]),
            Route("/v1/conversations/{conv_id}", self.retrieve_conversation, methods=["GET"]),
            Route("/v1/conversations/{conv_id}", self.update_conversation, methods=["POST"]),
            Route("/v1/conversations/{conv_id}", self.delete_conversation, methods=["DELETE"]),
            Route("/v1/conversations/{conv_id}/items", self.create_items, methods=["POST"]),
            Route("/v1/conversations/{conv_id}/items", self.list_items, methods=["GET"]),
            Route("/v1/conversations/{conv_id}/items/{item_id}", self.retrieve_item, methods=["GET"]),
            Route("/v1/conversations/{conv_id}/items/{item_id}", self.delete_item, methods=["DELETE"]),
            Route("/v1/responses", self.create_response, methods=["POST"]),
            Route("/v1/responses/{response_id}", self.retrieve_response, methods=["GET"]),
            Route("/v1/responses/{response_id}/cancel", self.cancel_response, methods=["POST"]),
            Route("/_emulator/state", self.debug_state, methods=["GET"]),
            Route("/_emulator/conversations/{conv_id}/items", self.debug_items, methods=["GET"]),
            Route("/_emulator/requests", self.debug_requests, methods=["GET"]),
            Route("/_emulator/reset", self.debug_reset, methods=["POST"]),
            Route("/_emulator/config", self.debug_config, methods=["POST"]),
        ]

    # --- conversations -------------------------------------------------------------------------------

    async def create_conversation(self, request: Request) -> Response:
        body = await _json(request, required=False)
        new_items = inputs.items(body.get("items"), "items", required=False)
        tools.check_duplicates(ItemIndex(), inputs.given_ids(body.get("items")), param="items")
        conv = self.store.create_conversation(inputs.metadata(body.get("metadata")), new_items)
        return _ok(objects.conversation(conv.id, conv.created_at, conv.metadata))

    async def retrieve_conversation(self, request: Request) -> Response:
        conv = self.store.conversation(request.path_params["conv_id"])
        return _ok(objects.conversation(conv.id, conv.created_at, conv.metadata))

    async def update_conversation(self, request: Request) -> Response:
        conv = self.store.conversation(request.path_params["conv_id"])
        body = await _json(request)
        if "metadata" not in body:
            raise ApiError(400, "Missing required parameter: 'metadata'.", param="metadata",
                           code="missing_required_parameter")
        conv.metadata = inputs.metadata(body["metadata"])
        return _ok(objects.conversation(conv.id, conv.created_at, conv.metadata))

    async def delete_conversation(self, request: Request) -> Response:
        conv = self.store.conversation(request.path_params["conv_id"])
        with self.store.mutex:
            self.store.conversations.pop(conv.id, None)
        return _ok(objects.conversation_deleted(conv.id))

    async def create_items(self, request: Request) -> Response:
        conv = self.store.conversation(request.path_params["conv_id"])
        raw = (await _json(request)).get("items")
        new_items = inputs.items(raw, "items", required=True)
        with self.store.mutex:
            tools.check_duplicates(conv.index, inputs.given_ids(raw), param="items")
        self.store.append_items(conv, new_items)
        return _ok(objects.item_list(new_items, has_more=False))

    async def list_items(self, request: Request) -> Response:
        conv = self.store.conversation(request.path_params["conv_id"])
        query = request.query_params
        return _ok(inputs.page(self.store.snapshot_items(conv.id), after=query.get("after"),
                               limit_=inputs.limit(query.get("limit")),
                               order_=inputs.order(query.get("order"))))

    async def retrieve_item(self, request: Request) -> Response:
        conv = self.store.conversation(request.path_params["conv_id"])
        for item in self.store.snapshot_items(conv.id):
            if item["id"] == request.path_params["item_id"]:
                return _ok(item)
        raise ApiError(404, f"Item with id '{request.path_params['item_id']}' not found.", param="item_id")

    async def delete_item(self, request: Request) -> Response:
        conv = self.store.conversation(request.path_params["conv_id"])
        self.store.delete_item(conv, request.path_params["item_id"])
        return _ok(objects.conversation(conv.id, conv.created_at, conv.metadata))

    # --- responses -----------------------------------------------------------------------------------

    async def create_response(self, request: Request) -> Response:
        body = await _json(request)
        conv_id = inputs.conversation_ref(body.get("conversation"))
        if conv_id is not None and body.get("previous_response_id"):
            raise ApiError(400, "'previous_response_id' cannot be used in conjunction with 'conversation'.",
                           param="previous_response_id")
        body["metadata"] = inputs.metadata(body.get("metadata"))
        if conv_id is not None:
            self.store.conversation(conv_id)
        if body.get("input") is None and (conv_id is None or self.config.reject_empty_input):
            raise ApiError(400, "Missing required parameter: 'input'.", param="input",
                           code="missing_required_parameter")
        input_items = [] if body.get("input") is None else inputs.response_input(body["input"])
        offer = options.offer(body)
        stream = bool(body.get("stream"))
        fault = self._fault(request, body, conv_id, stream)
        record = RequestRecord(
            response_id=None, conversation_id=conv_id, stream=stream, fault=fault.kind,
            background=bool(body.get("background")),
            input_texts=[_text(i) for i in input_items if i["type"] == "message"],
            tools=offer.function_names, other_tools=offer.other_tools, tool_choice=offer.tool_choice,
            parallel_tool_calls=offer.parallel_tool_calls, text_format=offer.text["format"],
            function_call_outputs=[{"call_id": i["call_id"], "output": i["output"]} for i in input_items
                                   if i["type"] == "function_call_output"],
            params={k: v for k, v in body.items() if k != "input"})
        self.store.log_request(record)
        await inject_http_fault(fault.kind, record, self.config)
        run = self.engine.start(body=body, input_items=input_items, conversation_id=conv_id, fault=fault,
                                record=record, offer=offer, given_ids=inputs.given_ids(body.get("input")))
        if stream:
            return _sse(self._follow(run, drop=fault.kind == "drop"))
        if not run.obj["background"]:
            await self.engine.wait(run)
        return _ok(run.obj)

    def _fault(self, request: Request, body: JSON, conv_id: str | None, stream: bool) -> Any:
        metadata = body["metadata"]
        spec = request.headers.get("x-emulator-fault") or metadata.get("emulator_fault")
        key = (request.headers.get("x-emulator-fault-key") or metadata.get("emulator_fault_key")
               or str(conv_id))
        try:
            if spec:
                parse_spec(spec)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="metadata") from None
        return self.faults.decide(spec, key, allow_stream_faults=stream)

    async def _follow(self, run: ResponseRun, *, drop: bool, starting_after: int = -1) -> AsyncIterator[JSON]:
        try:
            async for event in run.follow(starting_after):
                yield event
                # Whether the response goes on server-side is the engine's decision (drop_completes).
                if drop and event["type"] in DELTAS:
                    raise StreamDropped(run.obj["id"])
        finally:
            # Closed early, by the drop fault or by a client that went away: the engine reads this.
            if not run.done and not run.obj["background"]:
                run.abandoned = True

    async def retrieve_response(self, request: Request) -> Response:
        run = self.engine.get(request.path_params["response_id"])
        if request.query_params.get("stream") in ("true", "1"):
            if not run.obj["background"]:
                raise ApiError(400, "Only background responses can be streamed again.", param="stream")
            after = request.query_params.get("starting_after")
            try:
                start = int(after) if after is not None else -1
            except ValueError:
                raise ApiError(400, "Invalid 'starting_after': expected an integer.",
                               param="starting_after") from None
            return _sse(self._follow(run, drop=False, starting_after=start))
        return _ok(run.obj)

    async def cancel_response(self, request: Request) -> Response:
        run = self.engine.get(request.path_params["response_id"])
        await self.engine.cancel(run)
        return _ok(run.obj)

    # --- debug ---------------------------------------------------------------------------------------

    async def debug_state(self, request: Request) -> Response:
        return JSONResponse(self.store.summary())

    async def debug_items(self, request: Request) -> Response:
        return JSONResponse(self.store.snapshot_items(request.path_params["conv_id"]))

    async def debug_requests(self, request: Request) -> Response:
        return JSONResponse([asdict(r) for r in self.store.snapshot_requests()])

    async def debug_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def debug_config(self, request: Request) -> Response:
        body = await _json(request)
        for name, value in body.items():
            if not hasattr(self.config, name):
                raise ApiError(400, f"Unknown config field {name!r}.", param=name)
            setattr(self.config, name, tuple(value) if isinstance(value, list) else value)
        if "seed" in body:
            self.faults.reseed(int(body["seed"]))
        return JSONResponse(asdict(self.config))


def _text(item: JSON) -> str:
    return "".join(part.get("text", "") for part in item.get("content", []))


def _ok(body: JSON) -> Response:
    return JSONResponse(body, headers={"x-request-id": f"req_{secrets.token_hex(16)}"})


def _sse(events: AsyncIterator[JSON]) -> Response:
    async def body() -> AsyncIterator[bytes]:
        async for event in events:
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"x-request-id": f"req_{secrets.token_hex(16)}"})


async def _json(request: Request, *, required: bool = True) -> JSON:
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                            "aren't using your HTTP library correctly. "
                            "The OpenAI API expects a JSON payload.)")
    return body


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "Invalid URL" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(objects.error_body(f"{message} ({request.method} {request.url.path})"),
                        status_code=exc.status_code)


async def _crash(request: Request, exc: Exception) -> Response:
    return JSONResponse(objects.error_body(f"Emulator bug: {exc!r}", type_="server_error"), status_code=500)
