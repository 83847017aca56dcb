"""Function calling: which calls the model makes (markers in the user text, ``tool_choice``), and OpenAI's
rules for calls and their outputs on a conversation (tools-and-platforms.md §1). Pure functions, no I/O.

A marker ``[call NAME]``, ``[call NAME {"json": "args"}]`` or ``[call NAME {...} rounds=N]`` in the last user
message asks for a call of an offered function tool; several markers are parallel calls (only the first when
``parallel_tool_calls`` is false). ``rounds=N``: the model calls it again after each batch of outputs, N times
in all. Without arguments in the marker, they are the smallest object its ``parameters`` schema accepts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .index import ItemIndex, text_of
from .objects import JSON
from .options import Offer
from .schemas import minimal_instance
from .store import ApiError

_MARKER = re.compile(r"\[call\s+([A-Za-z0-9_-]{1,64})\s*")
_MARKER_END = re.compile(r"\s*(?:rounds=(\d+)\s*)?\]")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Marker:
    name: str
    arguments: str | None
    rounds: int = 1


@dataclass(frozen=True)
class Planned:
    name: str
    arguments: str


def markers(text: str) -> list[Marker]:
    """The ``[call ...]`` markers in ``text``, in order; a malformed one (bad JSON, no ``]``) is just text."""
    found = []
    for match in _MARKER.finditer(text):
        position, arguments = match.end(), None
        if text.startswith("{", position):
            try:
                value, position = _DECODER.raw_decode(text, position)
            except ValueError:
                continue
            if not isinstance(value, dict):
                continue
            arguments = _compact(value)
        end = _MARKER_END.match(text, position)
        if end is not None:
            found.append(Marker(match.group(1), arguments, max(1, int(end.group(1) or 1))))
    return found


def check_duplicates(history: ItemIndex, raw_ids: list[str], param: str = "input") -> None:
    """Resending a stored item (or one id twice) is OpenAI's 400 ``Duplicate item found``."""
    seen: set[str] = set()
    for item_id in raw_ids:
        if item_id in history.ids or item_id in seen:
            raise ApiError(400, f"Duplicate item found with id {item_id}. Remove duplicate items from your "
                                "input and try again.", param=param)
        seen.add(item_id)


def check_outputs(history: ItemIndex, input_items: list[JSON]) -> None:
    """An output needs a stored (or earlier input) call; every call needs an output once this input is in."""
    calls = [i["call_id"] for i in input_items if i["type"] == "function_call"]
    known = set(calls)
    answered: set[str] = set()
    for item in input_items:
        if item["type"] == "function_call":
            known.add(item["call_id"])
        elif item["type"] == "function_call_output":
            if item["call_id"] not in history.call_names and item["call_id"] not in known:
                raise ApiError(400, "No tool call found for function call output with call_id "
                                    f"{item['call_id']}.", param="input")
            answered.add(item["call_id"])
    for call_id in [*history.pending, *calls]:
        if call_id not in answered:
            raise ApiError(400, f"No tool output found for function call {call_id}.", param="input")


def plan(offer: Offer, history: ItemIndex, input_items: list[JSON]) -> list[Planned]:
    """The calls this response makes (none: it answers with text)."""
    callable_ = offer.callable
    if offer.tool_choice == "none" or not callable_:
        return []
    user_text = next((text_of(i.get("content")) for i in reversed(input_items) if i.get("role") == "user"),
                     None)
    if user_text is None:
        user_text = history.last_user_text
    rounds_done = history.rounds_after(input_items)
    calls = [Planned(m.name, m.arguments if m.arguments is not None else arguments_for(callable_[m.name]))
             for m in markers(user_text) if m.name in callable_ and m.rounds > rounds_done]
    if not calls and offer.forced:
        # As upstream, a forced choice forces a call on every request, after outputs too (callers reset it).
        name = offer.forced if isinstance(offer.forced, str) else next(iter(callable_))
        calls = [Planned(name, arguments_for(callable_[name]))]
    return calls if offer.parallel_tool_calls else calls[:1]


def arguments_for(parameters: JSON | None) -> str:
    return _compact(minimal_instance(parameters) if parameters else {})


def tool_results(history: ItemIndex, input_items: list[JSON]) -> str | None:
    """``Tool results: name=output; ...`` when outputs follow the input's last user message (or the input has
    none: the usual follow-up on a conversation), else None."""
    users = [index for index, item in enumerate(input_items) if item.get("role") == "user"]
    names = {**history.call_names, **{i["call_id"]: i["name"] for i in input_items
                                       if i["type"] == "function_call"}}
    outputs = [i for i in input_items[users[-1] + 1 if users else 0:] if i["type"] == "function_call_output"]
    if not outputs:
        return None
    return "Tool results: " + "; ".join(f"{names.get(o['call_id'], o['call_id'])}={text_of(o['output'])}"
                                        for o in outputs)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
