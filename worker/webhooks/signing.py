"""Standard Webhooks signatures (https://www.standardwebhooks.com), made by the ``standardwebhooks`` library
so a receiver verifies them with the same library (or any other implementation of the spec)."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    """A new signing secret in the ``whsec_<base64>`` form the library and the spec use (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


class Signer:
    def __init__(self, secret: str) -> None:
        if not secret.startswith(SECRET_PREFIX):
            raise ValueError("the webhook secret must look like whsec_<base64> (parley webhooks new-secret)")
        # Webhook() decodes the base64; a bad one raises here, at start-up, not on the first delivery.
        self._webhook = Webhook(secret)

    def headers(self, message_id: str, payload: str, *, now: datetime | None = None) -> dict[str, str]:
        """The three signature headers for one attempt; the timestamp is the attempt's (receivers reject
        signatures older than a few minutes), the id is the event's, the same on every attempt."""
        at = (now or datetime.now(tz=UTC)).replace(microsecond=0)
        return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": self._webhook.sign(message_id, at, payload)}
