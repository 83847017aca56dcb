"""The surface of double texting: the three terminal statuses and events a merged, superseded or interrupted
turn ends with, as the Lua side writes them (event JSON, turn hash fields), rebuilt from a turn record when
the real event was trimmed, and shown by ``parley chat``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from parley.api.cli.chat import _ending
from parley.worker.events.models import (
    TERMINAL_TYPES,
    TurnInterrupted,
    TurnMerged,
    TurnSuperseded,
    parse_event,
    terminal_event_of,
)
from parley.worker.messages import Turn, TurnStatus
from parley.worker.texting.decide import TERMINAL

CONV = "conv_texting"
TURN = f"turn_0123456789abcdef_{CONV}"
LATER = f"turn_fedcba9876543210_{CONV}"
ENDS = {"merged": TurnMerged, "superseded": TurnSuperseded, "interrupted": TurnInterrupted}


def lua_event(status: str, **extra: Any) -> str:
    """An event as the mailbox script builds it: ``seq`` appended last, ``into`` only for merged."""
    body: dict[str, Any] = {"id": f"{TURN}.{status}", "type": f"turn.{status}", "conversation_id": CONV,
                            "turn_id": TURN, "created_at": 1700000000.25}
    if status == "merged":
        body["into"] = LATER
    body.update({"answered_by": LATER, **extra, "seq": 7})
    return json.dumps(body, separators=(",", ":"))


@pytest.mark.parametrize("status", list(ENDS))
@pytest.mark.parametrize("metadata", [None, {"bot": "web"}])
def test_each_new_event_parses_the_json_the_lua_side_writes(status: str, metadata: dict[str, str] | None
                                                            ) -> None:
    """turn.merged / turn.superseded / turn.interrupted parse into their models, metadata present or absent,
    and are terminal."""
    extra = {} if metadata is None else {"metadata": metadata}
    event = parse_event(lua_event(status, **extra))
    assert type(event) is ENDS[status]
    assert (event.id, event.turn_id, event.seq, event.answered_by, event.metadata) == (
        f"{TURN}.{status}", TURN, 7, LATER, metadata)
    assert isinstance(event, TurnMerged) == (status == "merged")
    if isinstance(event, TurnMerged):
        assert event.into == LATER
    assert event.type in TERMINAL_TYPES


@pytest.mark.parametrize("status", list(ENDS))
def test_each_new_event_refuses_an_unknown_field_and_needs_answered_by(status: str) -> None:
    """Like every event, an unknown field is an error, and so is a missing ``answered_by``."""
    with pytest.raises(ValidationError):
        parse_event(lua_event(status, reason="cancelled"))
    body = json.loads(lua_event(status))
    del body["answered_by"]
    with pytest.raises(ValidationError):
        parse_event(json.dumps(body))


def test_merged_needs_into_and_only_merged_has_it() -> None:
    """``into`` is required on turn.merged and unknown on the other two."""
    body = json.loads(lua_event("merged"))
    del body["into"]
    with pytest.raises(ValidationError):
        parse_event(json.dumps(body))
    for status in ("superseded", "interrupted"):
        with pytest.raises(ValidationError):
            parse_event(lua_event(status, into=LATER))


def test_the_new_statuses_are_terminal_and_match_the_texting_decisions() -> None:
    """merged, superseded and interrupted end a turn; the statuses that end one are exactly the ones
    worker/texting decides between, and each has its ``turn.<status>`` terminal event."""
    for status in (TurnStatus.merged, TurnStatus.superseded, TurnStatus.interrupted):
        assert status.terminal
    assert not any(s.terminal for s in (TurnStatus.queued, TurnStatus.running, TurnStatus.requires_action))
    ended = {s.value for s in TurnStatus if s.terminal}
    assert ended == set(TERMINAL)
    assert {f"turn.{s}" for s in ended} == TERMINAL_TYPES


@pytest.mark.parametrize("status", list(ENDS))
def test_terminal_event_of_rebuilds_each_from_the_turn_record(status: str) -> None:
    """From a record as the mailbox leaves it, the rebuilt event has the real one's id, names the answering
    turn, carries the metadata, and serialises to JSON that parses back the same."""
    fields = {"status": status, "input": json.dumps("hi"), "created_at": "1.5", "completed_at": "2.5",
              "answered_by": LATER, "metadata": json.dumps({"bot": "web"})}
    turn = Turn.from_hash(fields, CONV, TURN)
    event = terminal_event_of(turn, seq=12)
    assert type(event) is ENDS[status]
    assert (event.id, event.type, event.turn_id, event.seq, event.created_at, event.metadata) == (
        f"{TURN}.{status}", f"turn.{status}", TURN, 12, 2.5, {"bot": "web"})
    assert event.answered_by == LATER  # type: ignore[union-attr]
    if isinstance(event, TurnMerged):
        assert event.into == LATER
    assert parse_event(event.model_dump_json(exclude_none=True)) == event


def test_terminal_event_of_refuses_a_folded_turn_without_answered_by() -> None:
    """A merged record that names no answering turn is a bug: a ValueError, not an event pointing nowhere."""
    turn = Turn(id=TURN, conversation_id=CONV, status=TurnStatus.merged, input="hi", created_at=1.0)
    with pytest.raises(ValueError, match="answered_by"):
        terminal_event_of(turn, seq=1)


def test_a_turn_with_the_texting_fields_round_trips_through_its_hash() -> None:
    """to_hash / from_hash keep every new field; lists are stored as JSON, the rest as plain strings."""
    turn = Turn(id=LATER, conversation_id=CONV, status=TurnStatus.queued, input="and you?", created_at=3.0,
                answers=[TURN], double_texting="interrupt", debounce_ms=300, debounce_max_ms=2000,
                batch_inputs=["hi", [{"role": "user", "content": "how are"}], "and you?"],
                interrupt_by=f"turn_00000000000000aa_{CONV}", interrupted=True,
                answered_by=f"turn_00000000000000bb_{CONV}")
    stored = turn.to_hash()
    assert json.loads(stored["answers"]) == [TURN]
    assert json.loads(stored["batch_inputs"])[1][0]["role"] == "user"
    assert (stored["double_texting"], stored["debounce_ms"], stored["interrupt_by"]) == (
        "interrupt", "300", f"turn_00000000000000aa_{CONV}")
    assert Turn.from_hash(stored, CONV, LATER) == turn
    assert "interrupted" not in Turn(id=LATER, conversation_id=CONV, status=TurnStatus.queued, input="x",
                                     created_at=1.0).to_hash()


def test_the_fields_as_the_lua_side_writes_them_parse() -> None:
    """The mailbox writes ``interrupted`` as "1" and ``answers`` / ``batch_inputs`` as JSON array text."""
    fields = {"status": "queued", "input": json.dumps("b"), "created_at": "1.0", "interrupted": "1",
              "answers": json.dumps([TURN]), "batch_inputs": json.dumps(["a", "b"]), "debounce_ms": "250"}
    turn, problem = Turn.parse(fields, CONV, LATER)
    assert problem is None
    assert (turn.interrupted, turn.answers, turn.batch_inputs, turn.debounce_ms) == (True, [TURN], ["a", "b"],
                                                                                     250)
    assert Turn.from_hash({**fields, "interrupted": "0"}, CONV, LATER).interrupted is False


def test_chat_shows_who_answers_a_folded_turn() -> None:
    """``parley chat`` ends a merged, superseded or interrupted turn's line naming the turn answering it."""
    shown = [_ending(parse_event(lua_event(status))) for status in ENDS]
    assert shown == [f"[merged into {LATER}]", f"[superseded by {LATER}]",
                     f"[interrupted; answered by {LATER}]"]
