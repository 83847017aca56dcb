"""Periodic jobs stay quiet unless they act, and problems with them still show."""

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
