"""A typed Python client of parley's HTTP API, sync and async (httpx and pydantic only: importing it loads
neither Celery nor Redis nor the OpenAI SDK).

    from parley import ParleyClient

    with ParleyClient("http://127.0.0.1:8000", api_key="...") as parley:
        conv = parley.create_conversation(key="slack:T1:C2:1712345.678")
        turn = parley.send_turn(conv.id, "hello", idempotency_key="Ev123")
        for event in parley.stream_turn(turn.id):
            ...                                   # turn.started, response.delta..., turn.completed
        print(parley.wait_for_reply(turn.id).output_text)

``core`` holds what both clients share (each call's request and answer model, the retry policy, the SSE
reader); ``sync`` and ``aio`` only send.
"""

from __future__ import annotations

from .aio import AsyncParleyClient
from .core import RetryPolicy
from .errors import (
    AuthenticationError,
    ConflictError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    ParleyAPIError,
    ParleyConnectionError,
    ParleyError,
    ParleyTimeoutError,
    PermissionDeniedError,
    RateLimitError,
    UnavailableError,
)
from .sync import ParleyClient

__all__ = [
    "AsyncParleyClient",
    "AuthenticationError",
    "ConflictError",
    "InternalServerError",
    "InvalidRequestError",
    "NotFoundError",
    "ParleyAPIError",
    "ParleyClient",
    "ParleyConnectionError",
    "ParleyError",
    "ParleyTimeoutError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryPolicy",
    "UnavailableError",
]
