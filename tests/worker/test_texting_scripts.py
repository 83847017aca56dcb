"""The mailbox scripts apply the pure double-texting decisions (worker/texting/decide.py) exactly, against a
real Redis: what an arrival does under each policy and queue state (``on_arrival``), which waiting turns one
request answers and how the others end (``plan``), and the debounce wait (``debounce_deadline``)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from drain_support import run_ingress
from parley.worker.settings import Settings
from parley.worker.store.ingress import EnqueueStatus, Ingress
from parley.worker.store.mailbox import Mailbox
from parley.worker.texting.decide import on_arrival, plan
from parley.worker.texting.policy import MODES, TextingPolicy

CONV = "conv_texting"


def setup(settings: Settings) -> None:
    run_ingress(settings, lambda i: i.register_conversation(CONV, created_at=1, metadata={}, key=None))


def post(settings: Settings, text: str, **texting: Any) -> Any:
    async def go(ingress: Ingress) -> Any:
        return await ingress.enqueue(conversation_id=CONV, input=text, model=None, instructions=None,
                                     metadata={}, idempotency_key=None, texting=texting)

    return run_ingress(settings, go)


def status(mailbox: Mailbox, turn_id: str) -> str:
    return mailbox.load(CONV, turn_id).status.value


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("waiting", "running"), [(0, False), (2, False), (0, True), (2, True)])
def test_an_arrival_does_what_on_arrival_decides(mode: str, waiting: int, running: bool, settings: Settings,
                                                 redis_client: redis.Redis) -> None:
    """For every policy and queue state (turns waiting or not, one running or not), the enqueue script does
    what ``on_arrival`` says: refuses (reject), supersedes exactly the waiting turns (latest), or asks the
    running turn to stop (interrupt); otherwise it only queues."""
    setup(settings)
    mailbox = Mailbox(redis_client, settings)
    running_id = None
    if running:
        running_id = post(settings, "running").turn_id
        claim = mailbox.claim(CONV)
        assert claim.started is not None and claim.started.turn_id == running_id
    queued = [post(settings, f"w{n}").turn_id for n in range(waiting)]
    decision = on_arrival(TextingPolicy(mode), queued=queued, running=running_id)  # type: ignore[arg-type]

    result = post(settings, "new", double_texting=mode)

    assert (result.status is EnqueueStatus.ok) == decision.accepted
    if not decision.accepted:
        assert result.status is EnqueueStatus.busy
        assert [status(mailbox, t) for t in queued] == ["queued"] * waiting
        return
    superseded = [t for t in queued if status(mailbox, t) == "superseded"]
    assert superseded == list(decision.supersede)
    assert all(mailbox.load(CONV, t).answered_by == result.turn_id for t in superseded)
    if running_id is not None:
        asked = mailbox.load(CONV, running_id).interrupt_by
        assert asked == (result.turn_id if decision.interrupt == running_id else None)


@pytest.mark.parametrize("mode", ["enqueue", "merge", "latest", "interrupt"])
def test_the_next_request_is_the_one_plan_decides(mode: str, settings: Settings,
                                                  redis_client: redis.Redis) -> None:
    """Four turns waiting under one policy: the turn the claim starts, the inputs its request holds, and the
    end of every other turn are ``plan``'s."""
    setup(settings)
    mailbox = Mailbox(redis_client, settings)
    posted = [post(settings, f"m{n}", double_texting=mode).turn_id for n in range(4)]
    waiting = [t for t in posted if status(mailbox, t) == "queued"]
    expected = plan(TextingPolicy(mode), waiting)  # type: ignore[arg-type]

    claim = mailbox.claim(CONV)

    assert claim.started is not None
    started = claim.started.turn
    assert started.id == expected.answer
    sent = started.batch_inputs or [started.input]
    assert sent == [mailbox.load(CONV, t).input for t in expected.inputs]
    others = {t: status(mailbox, t) for t in waiting if t != expected.answer}
    assert {t: s for t, s in others.items() if s != "queued"} == expected.ends  # the rest still wait
    assert [t for t, s in others.items() if s == "queued"] == [t for t in waiting if t not in expected.inputs]
    assert all(mailbox.load(CONV, t).answered_by == expected.answer for t in expected.ends)
    assert started.answers == ([t for t in expected.inputs if t != expected.answer] or None)


def test_an_interrupted_turn_is_answered_with_the_newer_one(settings: Settings,
                                                            redis_client: redis.Redis) -> None:
    """A running turn asked to stop and put back (interrupt.lua) is answered in one request with the turn
    that interrupted it, as ``plan`` says with it as ``interrupted``: it ends interrupted, naming that turn."""
    setup(settings)
    mailbox = Mailbox(redis_client, settings)
    first = post(settings, "first").turn_id
    claim = mailbox.claim(CONV)
    assert claim.token is not None
    newer = post(settings, "newer", double_texting="interrupt").turn_id
    expected = plan(TextingPolicy("interrupt"), [newer], interrupted=[first])

    finished = mailbox.interrupt(CONV, claim.token, first)

    assert finished.next is not None and finished.next.turn_id == expected.answer
    assert finished.next.turn.batch_inputs == ["first", "newer"]
    assert status(mailbox, first) == expected.ends[first] == "interrupted"
    assert mailbox.load(CONV, first).answered_by == newer


def test_debounce_holds_the_claim_until_the_deadline(settings: Settings, redis_client: redis.Redis) -> None:
    """With ``debounce_ms`` the claim starts nothing before the wait is over (it returns the deadline, and
    keeps no lease); each new message pushes the deadline, at most ``debounce_max_ms`` after the first."""
    setup(settings)
    mailbox = Mailbox(redis_client, settings)
    began = time.time() * 1000
    post(settings, "a", double_texting="merge", debounce_ms=400, debounce_max_ms=600)
    first = mailbox.claim(CONV)
    assert first.started is None and first.due_ms is not None
    assert began + 390 <= first.due_ms <= began + 450
    assert not redis_client.exists(mailbox.keys.lease(CONV))
    time.sleep(0.3)
    post(settings, "b", double_texting="merge", debounce_ms=400, debounce_max_ms=600)
    pushed = mailbox.claim(CONV)
    assert pushed.due_ms is not None and began + 590 <= pushed.due_ms <= began + 650  # capped, not +700
    time.sleep(max(0.0, (pushed.due_ms - time.time() * 1000) / 1000) + 0.02)
    started = mailbox.claim(CONV)
    assert started.started is not None and started.started.turn.batch_inputs == ["a", "b"]
