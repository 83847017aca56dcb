"""Server tools for the README's walk-through: a clock and a small calculator.

Run the workers with them (and the API, which offers them to every turn unless a turn says otherwise):

    PYTHONPATH=docs/examples PARLEY_TOOLS=tools parley up

then ask, through the emulator's marker syntax (docs/emulator.md) or a real model:

    parley send 'what time is it in Tokyo? [call clock {"tz": "Asia/Tokyo"}]'

A bot tool (run by the bot, not the worker) is a function tool in the turn's own ``tools``; the turn stops in
``requires_action`` and the bot posts the outputs, e.g. with the client (see ``bot_tool_example`` below).
"""

from __future__ import annotations

import ast
import operator
from datetime import datetime
from zoneinfo import ZoneInfo

from parley import ParleyClient, ToolContext, tool


@tool(timeout_s=2)
def clock(tz: str = "UTC") -> str:
    """The current date and time in an IANA time zone, e.g. Europe/Paris."""
    return datetime.now(ZoneInfo(tz)).isoformat(timespec="seconds")


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.Pow: operator.pow, ast.USub: operator.neg}


@tool(timeout_s=2)
def calculate(expression: str, ctx: ToolContext) -> dict[str, object]:
    """Evaluate an arithmetic expression such as (2 + 3) * 4 ** 2."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"not arithmetic: {ast.dump(node)[:60]}")

    # ctx.idempotency_key is the same on every run of this call: key side effects (a payment, a ticket) by it.
    return {"expression": expression, "result": value(ast.parse(expression, mode="eval").body),
            "call": ctx.call_id}


def bot_tool_example(base_url: str = "http://127.0.0.1:8000", api_key: str | None = None) -> str:
    """A tool the bot runs itself: the turn waits in ``requires_action`` until the bot posts the outputs."""
    lookup_order = {"type": "function", "name": "lookup_order", "description": "Find an order by its number.",
                    "parameters": {"type": "object", "properties": {"number": {"type": "string"}},
                                   "required": ["number"]}}
    with ParleyClient(base_url, api_key=api_key) as parley:
        conversation = parley.create_conversation(key="example:orders")
        turn = parley.send_turn(conversation.id, 'where is my order? [call lookup_order {"number": "A-17"}]',
                                tools=[lookup_order])
        waiting = parley.get_turn(turn.id, wait_s=30)
        if waiting.status.value == "requires_action" and waiting.required_action:
            outputs = {call["call_id"]: '{"status": "shipped"}'
                       for call in waiting.required_action["tool_calls"]}
            parley.submit_tool_outputs(turn.id, outputs)
        return parley.wait_for_reply(turn.id).output_text or ""
