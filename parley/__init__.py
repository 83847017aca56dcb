"""parley: ordered, crash-safe chat-bot turns on the OpenAI Responses and Conversations APIs.

The public surface. Bot code imports only from here::

    from parley import ParleyClient, AsyncParleyClient, ReplyConsumer, tool

Names are imported on first use (PEP 562), so ``from parley import ParleyClient`` loads the HTTP client alone:
neither Celery nor Redis nor the OpenAI SDK, which only the server side needs.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("parley")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0.0.0"

_EXPORTS = {
    # the HTTP client (httpx and pydantic only)
    "ParleyClient": "parley.api.client",
    "AsyncParleyClient": "parley.api.client",
    "ParleyError": "parley.api.client",
    "ParleyAPIError": "parley.api.client",
    "InvalidRequestError": "parley.api.client",
    "AuthenticationError": "parley.api.client",
    "PermissionDeniedError": "parley.api.client",
    "NotFoundError": "parley.api.client",
    "ConflictError": "parley.api.client",
    "RateLimitError": "parley.api.client",
    "InternalServerError": "parley.api.client",
    "UnavailableError": "parley.api.client",
    "ParleyConnectionError": "parley.api.client",
    "ParleyTimeoutError": "parley.api.client",
    "RetryPolicy": "parley.api.client",
    # events, as the client, webhooks and consumers see them
    "Event": "parley.worker.events.models",
    "TurnQueued": "parley.worker.events.models",
    "TurnStarted": "parley.worker.events.models",
    "TurnRetrying": "parley.worker.events.models",
    "ResponseDelta": "parley.worker.events.models",
    "TurnCompleted": "parley.worker.events.models",
    "TurnFailed": "parley.worker.events.models",
    "TurnCancelled": "parley.worker.events.models",
    "TurnMerged": "parley.worker.events.models",
    "TurnSuperseded": "parley.worker.events.models",
    "TurnInterrupted": "parley.worker.events.models",
    "TERMINAL_TYPES": "parley.worker.events.models",
    "parse_event": "parley.worker.events.models",
    # the replies stream, read with a consumer group (needs redis)
    "ReplyConsumer": "parley.worker.events.replies",
    "Delivery": "parley.worker.events.replies",
    # server tools (pydantic only)
    "tool": "parley.worker.tools",
    "ToolContext": "parley.worker.tools",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    # ``import X as X`` marks each name as re-exported for type checkers, which cannot read ``__all__`` built
    # from ``_EXPORTS``.
    from parley.api.client import (
        AsyncParleyClient as AsyncParleyClient,
    )
    from parley.api.client import (
        AuthenticationError as AuthenticationError,
    )
    from parley.api.client import (
        ConflictError as ConflictError,
    )
    from parley.api.client import (
        InternalServerError as InternalServerError,
    )
    from parley.api.client import (
        InvalidRequestError as InvalidRequestError,
    )
    from parley.api.client import (
        NotFoundError as NotFoundError,
    )
    from parley.api.client import (
        ParleyAPIError as ParleyAPIError,
    )
    from parley.api.client import (
        ParleyClient as ParleyClient,
    )
    from parley.api.client import (
        ParleyConnectionError as ParleyConnectionError,
    )
    from parley.api.client import (
        ParleyError as ParleyError,
    )
    from parley.api.client import (
        ParleyTimeoutError as ParleyTimeoutError,
    )
    from parley.api.client import (
        PermissionDeniedError as PermissionDeniedError,
    )
    from parley.api.client import (
        RateLimitError as RateLimitError,
    )
    from parley.api.client import (
        RetryPolicy as RetryPolicy,
    )
    from parley.api.client import (
        UnavailableError as UnavailableError,
    )
    from parley.worker.events.models import (
        TERMINAL_TYPES as TERMINAL_TYPES,
    )
    from parley.worker.events.models import (
        Event as Event,
    )
    from parley.worker.events.models import (
        ResponseDelta as ResponseDelta,
    )
    from parley.worker.events.models import (
        TurnCancelled as TurnCancelled,
    )
    from parley.worker.events.models import (
        TurnCompleted as TurnCompleted,
    )
    from parley.worker.events.models import (
        TurnFailed as TurnFailed,
    )
    from parley.worker.events.models import (
        TurnInterrupted as TurnInterrupted,
    )
    from parley.worker.events.models import (
        TurnMerged as TurnMerged,
    )
    from parley.worker.events.models import (
        TurnQueued as TurnQueued,
    )
    from parley.worker.events.models import (
        TurnRetrying as TurnRetrying,
    )
    from parley.worker.events.models import (
        TurnStarted as TurnStarted,
    )
    from parley.worker.events.models import (
        TurnSuperseded as TurnSuperseded,
    )
    from parley.worker.events.models import (
        parse_event as parse_event,
    )
    from parley.worker.events.replies import Delivery as Delivery
    from parley.worker.events.replies import ReplyConsumer as ReplyConsumer
    from parley.worker.tools import ToolContext as ToolContext
    from parley.worker.tools import tool as tool


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'parley' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next lookup skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
