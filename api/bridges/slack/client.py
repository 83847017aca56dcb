"""The Slack Web API client both sides use, from the settings."""

from __future__ import annotations

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from parley.worker.settings import Settings

PLATFORM = "slack"
RATE_LIMIT_RETRIES = 5
"""429s waited out per call (each for its ``Retry-After``, which Slack gives per method) before it fails."""


def web_client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    handlers = [AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
                AsyncConnectionErrorRetryHandler(max_retry_count=2)]
    if settings.slack_api_url:
        return AsyncWebClient(token=token, base_url=settings.slack_api_url, retry_handlers=handlers)
    return AsyncWebClient(token=token, retry_handlers=handlers)
