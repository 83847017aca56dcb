"""Upstream (OpenAI) failures seen by the API, translated into the envelope."""

from __future__ import annotations

import openai

from .errors import ApiError

UPSTREAM_RETRY_AFTER_S = 5


def upstream_error(exc: openai.OpenAIError) -> ApiError:
    if isinstance(exc, openai.NotFoundError):
        return ApiError(404, "not_found", "Not found upstream.", param=str(exc.param) if exc.param else None)
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return ApiError(400, "invalid_request", f"Rejected upstream: {exc.message}",
                        param=str(exc.param) if exc.param else None)
    # Auth failures, rate limits, outages and timeouts upstream are the service's problem, not the client's.
    return ApiError(503, "upstream_unavailable", "The model provider is unavailable; retry shortly.",
                    headers={"Retry-After": str(UPSTREAM_RETRY_AFTER_S)})
