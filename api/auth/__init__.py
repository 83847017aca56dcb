"""Who a request acts for: API keys with tenants and scopes (``keys``, ``scopes``), checked with the per-key
rate limit before any route runs (``middleware``); a route names the scope it needs by the type of its
principal parameter (``principal: TurnsWrite``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from ..errors import ApiError
from .scopes import CONVERSATIONS_READ, CONVERSATIONS_WRITE, TURNS_READ, TURNS_WRITE, Principal


def _requiring(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    # async although it awaits nothing: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
    # hop per request that waits for a CPU once more on a busy machine (bench/busy_ingress.py).
    async def check(request: Request) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:  # the middleware did not run: fail closed
            raise ApiError(401, "unauthorized", "Missing bearer API key.",
                           headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(scope):
            raise ApiError(403, "forbidden", f"The key {principal.key!r} does not have the scope {scope!r}.")
        return principal

    return check


ConversationsRead = Annotated[Principal, Depends(_requiring(CONVERSATIONS_READ))]
ConversationsWrite = Annotated[Principal, Depends(_requiring(CONVERSATIONS_WRITE))]
TurnsRead = Annotated[Principal, Depends(_requiring(TURNS_READ))]
TurnsWrite = Annotated[Principal, Depends(_requiring(TURNS_WRITE))]

__all__ = ["ConversationsRead", "ConversationsWrite", "Principal", "TurnsRead", "TurnsWrite"]
