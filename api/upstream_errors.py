"""Upstream (OpenAI) failures seen by the API, translated into the envelope with the provider's own reason.

The worker's translation (``parley.worker.errors.translate``) decides what kind of failure it is; this module
only chooses the HTTP answer: a wrong key or an exhausted quota is the operator's to fix (502, permanent), a
rate limit or an outage passes (503 with Retry-After).
"""

from __future__ import annotations

import openai

from parley.worker.errors import translate
from parley.worker.log import get_logger

from .errors import ApiError

log = get_logger(__name__)

UPSTREAM_RETRY_AFTER_S = 5
PERMANENT = {
    "upstream_auth_failed": "The model provider rejected parley's OpenAI API key",
    "upstream_quota_exceeded": "The model provider's quota for parley's OpenAI API key is used up",
}


def upstream_error(exc: openai.OpenAIError) -> ApiError:
    param = getattr(exc, "param", None)
    if isinstance(exc, openai.NotFoundError):
        return ApiError(404, "not_found", "Not found upstream.", param=str(param) if param else None)
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return ApiError(400, "invalid_request", f"Rejected upstream: {translate(exc).message}",
                        param=str(param) if param else None)
    try:
        error = translate(exc)
    except openai.OpenAIError:  # not an HTTP or transport failure (the SDK's own checks): still the service's
        log.warning("upstream_error", error=type(exc).__name__, message=str(exc))
        return ApiError(503, "upstream_unavailable", "The model provider could not be called; retry shortly.",
                        headers={"Retry-After": str(UPSTREAM_RETRY_AFTER_S)})
    log.warning("upstream_error", error=error.reason, status_code=error.status_code, code=error.code,
                message=error.message, upstream_request_id=error.request_id)
    if error.reason in PERMANENT:
        return ApiError(502, error.reason, f"{PERMANENT[error.reason]}: {error.message}")
    retry_after = error.retry_after_s if error.retry_after_s is not None else UPSTREAM_RETRY_AFTER_S
    return ApiError(503, "upstream_unavailable", f"The model provider is unavailable ({error.reason}: "
                    f"{error.message}); retry shortly.",
                    headers={"Retry-After": str(max(1, round(retry_after)))})
