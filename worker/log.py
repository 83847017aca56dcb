"""structlog, configured once for every parley process: console in development, JSON in production."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
import structlog.tracebacks
from pydantic import SecretStr

from .secret_url import mask_password, passwords
from .settings import Settings

_SECRET_PATTERNS = (
    re.compile(r"(sk-[A-Za-z0-9_\-]{8,})"),
    re.compile(r"(Bearer\s+)[^\s\"']+", re.IGNORECASE),
    # The password of a Redis or AMQP broker URL (user:password@host).
    re.compile(r"((?:rediss?|sentinel|amqps?|pyamqp)://[^:/@\s]*:)[^@\s]+(@)"),
)


_SECRETS: set[str] = set()
"""The literal secrets of this process's settings (keys, passwords): masked wherever they appear, whatever
their shape, since a provider or a proxy may echo one in a form no pattern knows."""
MIN_SECRET_CHARS = 6
"""Shorter values are not masked by value (they would match ordinary words); the patterns still apply."""


def register_secrets(settings: Settings) -> None:
    values = [s.get_secret_value() for s in (settings.openai_api_key, settings.webhook_secret,
                                             settings.flower_basic_auth) if s is not None]
    values += [key.get_secret_value() for key in settings.api_keys]
    if settings.flower_basic_auth is not None:
        values += [pair.partition(":")[2]
                   for pair in settings.flower_basic_auth.get_secret_value().split(",")]
    for url in (settings.redis_url.get_secret_value() if settings.redis_url else None,
                settings.broker_url.get_secret_value() if settings.broker_url is not None else None):
        if url:
            values += passwords(url)
    _SECRETS.update(v for v in values if len(v) >= MIN_SECRET_CHARS)


def redact_text(text: str) -> str:
    """``text`` with API keys, bearer tokens, Redis and broker passwords and this process's own secrets
    masked."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    text = _SECRET_PATTERNS[0].sub("[redacted]", text)
    text = _SECRET_PATTERNS[1].sub(r"\1[redacted]", text)
    return _SECRET_PATTERNS[2].sub(r"\1[redacted]\2", text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: mask secrets in every value, nested ones too (a traceback's frames)."""
    for key, value in event_dict.items():
        event_dict[key] = _redacted(value)
    return event_dict


def redact_url(url: str | SecretStr | None, unset: str = "") -> str:
    """``url`` (plain or the settings' ``SecretUrl``) with any password masked, fit for a startup line."""
    if url is None:
        return unset
    return redact_text(mask_password(url.get_secret_value() if isinstance(url, SecretStr) else url))


def upstream_description(settings: Settings) -> str:
    if settings.openai_base_url:
        return settings.openai_base_url
    return "OpenAI (api.openai.com)" if settings.openai_api_key else "OpenAI, but no OPENAI_API_KEY is set"


class DemotePeriodic(logging.Filter):
    """Celery logs every run of a periodic task at INFO: beat's "Sending due task", the worker's "received"
    and "succeeded", three lines every few seconds saying nothing happened. Those become DEBUG; warnings and
    errors about the same tasks (a failure, a lost broker) pass unchanged; the task itself logs what it did.
    """

    def __init__(self, task_names: tuple[str, ...]) -> None:
        super().__init__()
        self.task_names = task_names

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not any(name in record.getMessage() for name in self.task_names):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


PERIODIC_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


def quiet_periodic(*task_names: str) -> None:
    for name in PERIODIC_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DemotePeriodic) for f in logger.filters):
            logger.addFilter(DemotePeriodic(task_names))


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    register_secrets(settings)
    if settings.json_logs:
        # Tracebacks without frame locals: those held the Settings object, Redis URL and password included.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        renderer: list[Any] = [tracebacks, redact, structlog.processors.JSONRenderer()]
    else:
        renderer = [redact, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=shared + renderer,
        wrapper_class=structlog.make_filtering_bound_logger(
            level if isinstance(level, int) else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
