"""Double texting's pure decisions (worker/texting/): the policy each turn runs under, what an arrival does,
which turns one request answers, and the debounce deadline. The issue's five-messages-in-300-ms example is
played through them for every policy."""

from __future__ import annotations

import pytest

from parley.worker.texting.decide import (
    BUSY,
    INTERRUPTED,
    MERGED,
    SUPERSEDED,
    TERMINAL,
    debounce_deadline,
    on_arrival,
    plan,
)
from parley.worker.texting.policy import MODES, TextingPolicy, resolve

SERVER = TextingPolicy()
TURNS = [f"turn_{n}" for n in range(1, 6)]


def test_the_server_default_is_todays_behaviour() -> None:
    """No layer set: enqueue, no debounce."""
    assert resolve({}, {}, SERVER) == TextingPolicy("enqueue", 0, None)


def test_each_field_comes_from_the_first_layer_that_sets_it() -> None:
    """A turn that only asks for a shorter debounce keeps its conversation's mode; None sets nothing."""
    conversation = {"double_texting": "merge", "debounce_ms": 500, "debounce_max_ms": 2000}
    turn = {"debounce_ms": 100, "double_texting": None}
    assert resolve(turn, conversation, SERVER) == TextingPolicy("merge", 100, 2000)
    assert resolve({"double_texting": "reject"}, conversation, SERVER).mode == "reject"
    assert resolve({}, {}, TextingPolicy("latest", 300)) == TextingPolicy("latest", 300)


@pytest.mark.parametrize(("fields", "message"), [
    ({"double_texting": "shout"}, "double_texting must be one of"),
    ({"debounce_ms": -1}, "debounce_ms must be 0 or more"),
])
def test_invalid_combinations_are_refused_with_the_field_named(fields: dict[str, object],
                                                               message: str) -> None:
    """What the API turns into a 422: an unknown mode, a negative wait."""
    with pytest.raises(ValueError, match=message):
        resolve(fields, {}, SERVER)


def test_a_turn_cannot_wait_past_its_conversations_cap() -> None:
    """A cap below the wait is no error (the layers are set apart, by different people, and JSON Schema
    could not say the rule): the cap wins, so a turn asking for 5 s under a 1 s cap waits 1 s."""
    policy = resolve({"debounce_ms": 5000}, {"debounce_max_ms": 1000}, SERVER)
    assert debounce_deadline(policy, first_ms=10_000, last_ms=10_000) == 11_000


def test_only_reject_refuses_and_only_when_busy() -> None:
    """reject: 409 conversation_busy while a turn waits or runs, accepted when idle; the others accept."""
    reject = TextingPolicy("reject")
    assert on_arrival(reject, queued=[], running=None).accepted
    assert on_arrival(reject, queued=["a"], running=None).error == BUSY
    assert on_arrival(reject, queued=[], running="a").error == BUSY
    for mode in ("enqueue", "merge", "latest", "interrupt"):
        assert on_arrival(TextingPolicy(mode), queued=["a"], running="b").accepted  # type: ignore[arg-type]


def test_latest_supersedes_the_waiting_turns_and_interrupt_stops_the_running_one() -> None:
    """Neither touches what the other policy would: latest leaves the running turn alone, interrupt the
    queue."""
    assert on_arrival(TextingPolicy("latest"), queued=["a", "b"], running="r").supersede == ("a", "b")
    assert on_arrival(TextingPolicy("latest"), queued=["a"], running="r").interrupt is None
    arrival = on_arrival(TextingPolicy("interrupt"), queued=["a"], running="r")
    assert arrival.interrupt == "r" and arrival.supersede == ()
    assert on_arrival(TextingPolicy("interrupt"), queued=[], running=None).interrupt is None


Requests = list[tuple[str, dict[str, str]]]


def five_messages(policy: TextingPolicy) -> tuple[list[str], list[str], Requests]:
    """Five turns posted to an idle conversation within 300 ms, while the debounce (if any) keeps the first
    one waiting: which were accepted, which refused, and the requests that follow."""
    accepted: list[str] = []
    refused: list[str] = []
    queued: list[str] = []
    for turn in TURNS:
        arrival = on_arrival(policy, queued=queued, running=None)
        if not arrival.accepted:
            refused.append(turn)
            continue
        queued = [t for t in queued if t not in arrival.supersede] + [turn]
        accepted.append(turn)
    requests: Requests = []
    while queued:
        next_plan = plan(policy, queued)
        requests.append((next_plan.answer, {"inputs": ",".join(next_plan.inputs), **next_plan.ends}))
        settled = {next_plan.answer, *next_plan.inputs, *next_plan.ends}
        queued = [t for t in queued if t not in settled]
    return accepted, refused, requests


def test_five_messages_under_enqueue_are_five_ordered_requests() -> None:
    """enqueue: each turn answered alone, in arrival order."""
    accepted, refused, requests = five_messages(TextingPolicy("enqueue"))
    assert accepted == TURNS and refused == []
    assert [answer for answer, _ in requests] == TURNS


def test_five_messages_under_merge_are_one_request_naming_one_answer() -> None:
    """merge: one request with the five inputs in order; four turns end merged into the fifth."""
    _, _, requests = five_messages(TextingPolicy("merge", 500))
    [(answer, ends)] = requests
    assert answer == "turn_5" and ends.pop("inputs") == ",".join(TURNS)
    assert ends == dict.fromkeys(TURNS[:4], MERGED)


def test_five_messages_under_latest_answer_the_fifth_alone() -> None:
    """latest: the first four superseded as the next ones arrive; one request, the fifth's input only."""
    policy = TextingPolicy("latest", 500)
    superseded = []
    queued: list[str] = []
    for turn in TURNS:
        arrival = on_arrival(policy, queued=queued, running=None)
        superseded += arrival.supersede
        queued = [t for t in queued if t not in arrival.supersede] + [turn]
    assert superseded == TURNS[:4] and queued == ["turn_5"]
    assert plan(policy, queued).inputs == ("turn_5",)
    assert plan(policy, ["a", "b"]).ends == {"a": SUPERSEDED}


def test_five_messages_under_reject_accept_the_first_only() -> None:
    """reject: the first is accepted, the four others are refused."""
    accepted, refused, requests = five_messages(TextingPolicy("reject"))
    assert accepted == ["turn_1"] and refused == TURNS[1:]
    assert [answer for answer, _ in requests] == ["turn_1"]


def test_interrupt_answers_the_interrupted_input_with_the_new_one() -> None:
    """interrupt: the stopped turn's input goes first, the newest answers, the stopped one ends interrupted
    and any turn waiting between them merged."""
    result = plan(TextingPolicy("interrupt"), ["new_1", "new_2"], interrupted=["running"])
    assert result.inputs == ("running", "new_1", "new_2") and result.answer == "new_2"
    assert result.ends == {"running": INTERRUPTED, "new_1": MERGED}


def test_every_turn_a_plan_names_ends_once_and_only_the_answer_stays_open() -> None:
    """For every policy, each input turn is either the answer or has exactly one terminal status."""
    for mode in MODES:
        interrupted = ["x"] if mode == "interrupt" else []
        result = plan(TextingPolicy(mode), ["a", "b", "c"], interrupted=interrupted)  # type: ignore[arg-type]
        assert result.answer not in result.ends
        assert set(result.ends) | {result.answer} >= set(result.inputs)
        assert set(result.ends.values()) <= set(TERMINAL)


def test_a_plan_needs_a_turn() -> None:
    """An empty queue is a bug in the caller, not an empty request."""
    with pytest.raises(ValueError):
        plan(SERVER, [])


@pytest.mark.parametrize(("policy", "first", "last", "expected"), [
    (TextingPolicy("merge", 500), 0, 300, 800),              # 500 ms after the last message
    (TextingPolicy("merge", 500, 600), 0, 300, 600),         # capped 600 ms after the first
    (TextingPolicy("latest", 500, 500), 1000, 1000, 1500),   # one message: the wait itself
    (TextingPolicy("enqueue", 0), 0, 300, None),             # no debounce: start at once
    (TextingPolicy("reject", 500), 0, 0, None),              # reject never waits
])
def test_debounce_deadline(policy: TextingPolicy, first: int, last: int, expected: int | None) -> None:
    """min(last + debounce_ms, first + debounce_max_ms); None when the policy does not wait."""
    assert debounce_deadline(policy, first_ms=first, last_ms=last) == expected
