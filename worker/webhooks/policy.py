"""Pure decisions of webhook delivery: which URLs and event types are acceptable, whether a POST succeeded,
and what to do after a failure (retry when, or dead-letter). No I/O here, so every rule is unit-tested."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048
WEBHOOK_EVENT_TYPES = ("turn.completed", "turn.failed", "turn.cancelled", "turn.merged", "turn.superseded",
                       "turn.interrupted")
"""What a webhook can ask for: the terminal events, which reach the durable replies stream. Deltas do not
(they live in each conversation's own stream), so they are refused rather than silently never sent."""
DEFAULT_EVENTS = frozenset(WEBHOOK_EVENT_TYPES)


def check_webhook_url(url: str) -> str:
    """The URL unchanged, or ``ValueError`` saying what is wrong with it."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if any(c.isspace() for c in url):
        raise ValueError("must not contain whitespace")
    return url


def check_webhook_events(events: Iterable[str]) -> list[str]:
    """The event types, deduplicated in order, or ``ValueError`` naming one that cannot be delivered."""
    chosen = list(dict.fromkeys(events))
    if not chosen:
        raise ValueError("name at least one event type")
    for event in chosen:
        if event not in DEFAULT_EVENTS:
            raise ValueError(f"{event!r} cannot be delivered by webhook; choose from "
                             f"{', '.join(WEBHOOK_EVENT_TYPES)}")
    return chosen


def delivered(status: int) -> bool:
    """Any 2xx is an acknowledgement (the Standard Webhooks convention); everything else is retried."""
    return 200 <= status < 300


@dataclass(frozen=True)
class Backoff:
    base_s: float
    max_s: float
    retry_for_s: float

    def delay(self, failures: int, *, rng: random.Random | None = None) -> float:
        """Full jitter over a capped exponential: ``uniform(0, min(max, base * 2**(failures-1)))``, never
        below a tenth of the base, so a receiver that comes back is not hit by every retry at once."""
        ceiling = min(self.max_s, self.base_s * 2 ** min(max(failures - 1, 0), 60))
        return max(self.base_s / 10, (rng or random).uniform(0, ceiling))


@dataclass(frozen=True)
class Verdict:
    dead: bool
    due_at: float
    """When to try again (unused when ``dead``)."""


def after_failure(backoff: Backoff, *, failures: int, first_at: float, now: float,
                  rng: random.Random | None = None) -> Verdict:
    """After the ``failures``-th failed attempt of a delivery first tried at ``first_at``: dead-letter it once
    the next try would fall past the retry budget, else retry after the backoff."""
    due = now + backoff.delay(failures, rng=rng)
    if due - first_at > backoff.retry_for_s:
        return Verdict(dead=True, due_at=now)
    return Verdict(dead=False, due_at=due)
