"""Periodic jobs stay quiet unless they act, problems with them still show, and secrets never reach a log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from parley.worker.celery_app import REAP_TASK  # importing the app installs the filters


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[list[logging.LogRecord]]:
    handler = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(level)


def test_periodic_runs_are_not_logged_at_info(captured: list[logging.LogRecord]) -> None:
    """Beat's "Sending due task" and the worker's received/succeeded lines of the reaper are dropped at INFO;
    the same lines of a drain task (real work) are kept."""
    logging.getLogger("celery.beat").info("Scheduler: Sending due task parley-reap (%s)", REAP_TASK)
    logging.getLogger("celery.worker.strategy").info("Task %s[abc] received", REAP_TASK)
    logging.getLogger("celery.app.trace").info("Task %s[abc] succeeded in 0.001s: 0", REAP_TASK)
    logging.getLogger("celery.worker.strategy").info("Task parley.drain[abc] received")
    assert [r.getMessage() for r in captured] == ["Task parley.drain[abc] received"]


def test_problems_with_periodic_jobs_still_show(captured: list[logging.LogRecord]) -> None:
    """A failing or unsendable reaper run is logged as before (warnings and errors are never demoted)."""
    logging.getLogger("celery.beat").error("Message Error: Couldn't apply scheduled task parley-reap")
    logging.getLogger("celery.app.trace").error("Task %s[abc] raised unexpected: ValueError()", REAP_TASK)
    assert [r.levelname for r in captured] == ["ERROR", "ERROR"]


def test_periodic_runs_show_at_debug(captured: list[logging.LogRecord]) -> None:
    """With the log level at DEBUG, the reaper's runs are logged again, as DEBUG."""
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("celery.app.trace").info("Task %s[abc] succeeded in 0.001s: 0", REAP_TASK)
    assert [r.levelname for r in captured] == ["DEBUG"]


def test_json_tracebacks_hold_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """An unhandled error logged in JSON mode, with the Settings in a frame's locals, shows neither the Redis
    password nor any key: tracebacks carry no locals, and every nested value is masked, also a secret echoed in
    a shape no pattern knows."""
    from pydantic import SecretStr

    from parley.worker.log import configure_logging, get_logger
    from parley.worker.settings import Settings

    settings = Settings(_env_file=None, redis_url="redis://:hunter2-redis-pw@127.0.0.1:6379/0", log_format="json",
                        openai_api_key=SecretStr("proxy-token-XYZ123"), api_keys=[SecretStr("api-key-987654")])
    configure_logging(settings)

    def fail(settings: Settings) -> None:
        raise RuntimeError(f"upstream said: token proxy-token-XYZ123 refused for {settings.redis_url_required}")

    try:
        fail(settings)
    except RuntimeError:
        get_logger("test").exception("unhandled_error", echoed={"auth": ["api-key-987654"]})
    err = capsys.readouterr().err
    assert "unhandled_error" in err and "RuntimeError" in err
    for secret in ("hunter2-redis-pw", "proxy-token-XYZ123", "api-key-987654"):
        assert secret not in err, err


def test_broker_passwords_are_masked() -> None:
    """A broker URL's password is masked by its shape (AMQP as well as Redis), and the configured broker's
    password by value too, wherever it turns up."""
    from pydantic import SecretStr

    from parley.worker.log import redact_text, redact_url, register_secrets
    from parley.worker.settings import Settings

    register_secrets(Settings(_env_file=None, broker_url=SecretStr("amqp://parley:rabbit-pw-42@mq:5672/parley")))
    assert redact_url("amqps://bot:other-pw@mq.example:5671//") == "amqps://bot:[redacted]@mq.example:5671//"
    assert redact_url("rediss://:redis-pw@cache:6380/1") == "rediss://:[redacted]@cache:6380/1"
    assert redact_text("ACCESS_REFUSED for password rabbit-pw-42") == "ACCESS_REFUSED for password [redacted]"
