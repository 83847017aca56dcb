"""Pure webhook decisions: acceptable URLs and event types, what counts as delivered, capped jittered backoff,
and when a delivery is dead-lettered; signatures verify with the standardwebhooks library."""

from __future__ import annotations

import random

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from parley.worker.events.models import TERMINAL_TYPES
from parley.worker.settings import Settings
from parley.worker.webhooks.policy import (
    MAX_URL_CHARS,
    WEBHOOK_EVENT_TYPES,
    Backoff,
    after_failure,
    check_webhook_events,
    check_webhook_url,
    delivered,
)
from parley.worker.webhooks.signing import Signer, generate_secret

BACKOFF = Backoff(base_s=1.0, max_s=60.0, retry_for_s=3600.0)


@pytest.mark.parametrize("url", ["https://example.com/hook", "http://127.0.0.1:8080/x?y=1",
                                 "https://bot.example.org:443/" + "a" * 100])
def test_http_and_https_urls_are_accepted(url: str) -> None:
    """A plain http(s) URL with a host is kept as given."""
    assert check_webhook_url(url) == url


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "https://", "http:///path",
                                 "https://exa mple.com/", "https://example.com:99999999/",
                                 "https://example.com/" + "a" * MAX_URL_CHARS])
def test_other_urls_are_refused(url: str) -> None:
    """Other schemes, no host, whitespace, a bad port or more than MAX_URL_CHARS characters: ValueError."""
    with pytest.raises(ValueError):
        check_webhook_url(url)


def test_event_types_are_terminal_ones_deduplicated() -> None:
    """Terminal types are kept in order without repeats; deltas and unknown types are refused by name."""
    assert check_webhook_events(["turn.failed", "turn.completed", "turn.failed"]) == ["turn.failed",
                                                                                     "turn.completed"]
    for bad in (["response.delta"], ["turn.queued"], []):
        with pytest.raises(ValueError):
            check_webhook_events(bad)


def test_every_terminal_event_type_can_be_delivered() -> None:
    """A webhook can ask for exactly the terminal events (all reach the replies stream), the double-texting
    ends included; the default webhook gets them all."""
    assert set(WEBHOOK_EVENT_TYPES) == TERMINAL_TYPES
    assert check_webhook_events(["turn.merged", "turn.superseded", "turn.interrupted"]) == [
        "turn.merged", "turn.superseded", "turn.interrupted"]
    assert set(Settings(_env_file=None).webhook_events) == TERMINAL_TYPES


def test_only_2xx_is_delivered() -> None:
    """2xx acknowledges a delivery; redirects, client and server errors are all retried."""
    assert delivered(200) and delivered(204) and delivered(299)
    assert not any(delivered(s) for s in (199, 301, 400, 404, 410, 429, 500, 503))


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    """The n-th failure waits uniform(0, min(max, base·2^(n-1))), never below a tenth of the base."""
    rng = random.Random(7)
    for failures in range(1, 30):
        ceiling = min(60.0, 2 ** (failures - 1))
        delays = [BACKOFF.delay(failures, rng=rng) for _ in range(200)]
        assert all(0.1 <= d <= max(ceiling, 0.1) for d in delays)
    assert max(BACKOFF.delay(20, rng=rng) for _ in range(500)) > 45  # reaches the cap, and jitter spreads


def test_retry_until_the_budget_then_dead_letter() -> None:
    """A failure whose next try falls inside the budget is retried then; past it, the delivery is dead."""
    verdict = after_failure(BACKOFF, failures=3, first_at=1000.0, now=1010.0, rng=random.Random(1))
    assert not verdict.dead and 1010.0 < verdict.due_at <= 1014.0
    late = after_failure(BACKOFF, failures=40, first_at=1000.0, now=1000.0 + 3599.9, rng=random.Random(1))
    assert late.dead
    assert after_failure(BACKOFF, failures=1, first_at=0, now=10_000, rng=random.Random(1)).dead


def test_signatures_verify_with_standardwebhooks_and_fail_with_another_secret() -> None:
    """The headers made by Signer verify with the library and the same secret; another secret, or a body
    changed on the way, is rejected."""
    secret = generate_secret()
    payload = '{"id":"turn_1.completed","type":"turn.completed"}'
    headers = Signer(secret).headers("turn_1.completed", payload)
    assert headers["webhook-id"] == "turn_1.completed"
    assert Webhook(secret).verify(payload, headers)["id"] == "turn_1.completed"
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(payload, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(payload.replace("1", "2"), headers)


def test_a_secret_not_in_whsec_form_is_refused() -> None:
    """The dispatcher refuses a secret that is not ``whsec_<base64>`` before it sends anything."""
    with pytest.raises(ValueError):
        Signer("hunter2")
