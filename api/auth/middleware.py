"""Authentication and the per-key rate limit, as plain ASGI in front of the routes.

In front of them because FastAPI reads and parses a request's body before it runs a route's dependencies:
checked there, a request without a valid key would still have its body read. Here a bad key is answered
401 before anything reads the body, and a key over its rate 429 before any work is done. The principal is
left in the request's state for the routes' scope checks, and the key's name and tenant are bound to the log
context, so the one ``request`` line per request (the audit line) names the key, never its secret.
"""

from __future__ import annotations

import math

import redis.asyncio
import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.worker.log import get_logger
from parley.worker.settings import Settings
from parley.worker.store import scripts
from parley.worker.store.connections import REDIS_ERRORS
from parley.worker.store.keys import DEFAULT_TENANT, Keys

from ..errors import send_error
from .keys import KeyConfigError, KeyRing
from .scopes import ALL_SCOPES, Principal

log = get_logger(__name__)

PROTECTED_PREFIX = "/v1/"
ANONYMOUS = Principal(key="anonymous", tenant=DEFAULT_TENANT, scopes=ALL_SCOPES)
"""Who requests act as when no key is configured (the API then only binds to loopback)."""
CHALLENGE = [(b"www-authenticate", b"Bearer")]


def bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Authenticate:
    def __init__(self, app: ASGIApp, *, ring: KeyRing, settings: Settings) -> None:
        self.app = app
        self.ring = ring
        self.settings = settings
        self.keys = Keys(settings.key_prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        principal = ANONYMOUS
        if self.ring.enabled:
            self._reload()
            headers = dict(scope["headers"])
            token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
            if token is None:
                await send_error(send, 401, "unauthorized", "Missing bearer API key.", CHALLENGE)
                return
            key = self.ring.find(token)
            if key is None:
                await send_error(send, 401, "unauthorized", "Invalid API key.", CHALLENGE)
                return
            principal = Principal(key=key.name, tenant=key.tenant, scopes=key.scopes)
        structlog.contextvars.bind_contextvars(key=principal.key, tenant=principal.tenant)
        retry_after_ms = await self._limited(scope, principal)
        if retry_after_ms:
            await send_error(send, 429, "rate_limited",
                             f"This key is over its rate of {self.settings.rate_limit_per_s:g} requests per "
                             "second; retry after the time in Retry-After.",
                             [(b"retry-after", str(max(1, math.ceil(retry_after_ms / 1000))).encode())])
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    def _reload(self) -> None:
        try:
            if self.ring.reload():
                log.info("api_keys_reloaded", keys=len(self.ring.index))
                self.ring.last_error = None
        except (OSError, KeyConfigError) as exc:
            message = str(exc)
            if message != self.ring.last_error:  # once per distinct problem, not per request
                log.error("api_keys_file_invalid", error=message, kept=len(self.ring.index))
                self.ring.last_error = message

    async def _limited(self, scope: Scope, principal: Principal) -> int:
        """Milliseconds to wait when the key is over its rate; 0 when the request may go on."""
        rate = self.settings.rate_limit_per_s
        if rate <= 0:
            return 0
        # The app's shared pool, made by its lifespan (after this middleware was built).
        client: redis.asyncio.Redis = scope["app"].state.services.ingress.client
        burst = max(1, self.settings.rate_limit_burst)
        try:
            allowed, retry_ms = await scripts.RATE_LIMIT.run_async(
                client, [self.keys.rate_limit(principal.key)], [max(1, int(1_000_000 / rate)), burst])
        except REDIS_ERRORS as exc:
            # Fail open: the route itself answers 503 if Redis is really gone, and a limiter hiccup must not
            # turn every bot away.
            log.warning("rate_limit_unavailable", error=str(exc))
            return 0
        return 0 if allowed else max(1, int(retry_ms))
