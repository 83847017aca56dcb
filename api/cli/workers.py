"""``parley worker`` and ``parley beat``: Celery with parley's settings, after a quick check that Redis and
the broker answer (Celery itself would retry an unreachable broker silently, forever)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from parley.worker.log import redact_url
from parley.worker.settings import Settings

REDIS_CHECK_TIMEOUT_S = 3.0

WORKER_HELP = """\
usage: parley worker [CELERY WORKER OPTIONS...]

Run a Celery worker that drains conversations (queue "parley"), with parley's settings:
  PARLEY_REDIS_URL           Redis for mailboxes, events and the broker (required)
  PARLEY_BROKER_URL          a broker of its own (amqp://... or redis://...); default: PARLEY_REDIS_URL
  PARLEY_WORKER_POOL         Celery pool (default: threads)
  PARLEY_WORKER_CONCURRENCY  turns in flight per process (default: 200)
  PARLEY_OPENAI_API_KEY / OPENAI_API_KEY, PARLEY_OPENAI_BASE_URL   the upstream
  PARLEY_LOG_LEVEL           (default: INFO)
Every setting is listed in the README. Further arguments go to `celery worker`; see
`celery -A parley.worker.celery_app worker --help` for those.
"""

BEAT_HELP = """\
usage: parley beat [CELERY BEAT OPTIONS...]

Run Celery beat, which schedules the reaper (re-wakes conversations whose wake-up was lost or whose worker
died) every PARLEY_REAPER_INTERVAL_S seconds (default: 5). Run exactly one. Settings:
  PARLEY_REDIS_URL           Redis for mailboxes and the broker (required)
  PARLEY_BROKER_URL          a broker of its own (amqp://... or redis://...); default: PARLEY_REDIS_URL
  PARLEY_LOG_LEVEL           (default: INFO)
Its schedule file is $TMPDIR/parley-beat-schedule unless -s FILE is given.
Further arguments go to `celery beat`; see `celery -A parley.worker.celery_app beat --help` for those.
"""


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def redis_problem(settings: Settings) -> str | None:
    """Why the worker or beat cannot start (one line), or None when Redis answers."""
    import redis

    if not settings.redis_url:
        return ("PARLEY_REDIS_URL is not set: set it to your Redis (redis://host:6379/0), or run "
                "`parley up`, which starts everything with an embedded Redis")
    try:
        client = redis.Redis.from_url(settings.redis_url_required, socket_timeout=REDIS_CHECK_TIMEOUT_S,
                                      socket_connect_timeout=REDIS_CHECK_TIMEOUT_S)
        with client:
            client.ping()
    except (redis.RedisError, ValueError) as exc:
        return f"cannot reach Redis at {redact_url(settings.redis_url)}: {exc}"
    return broker_problem(settings)


def broker_problem(settings: Settings) -> str | None:
    """Why the broker of its own (``PARLEY_BROKER_URL``) cannot be reached; None when it answers or is
    not set."""
    if settings.broker_url is None:
        return None
    from kombu import Connection

    url = settings.broker_url.get_secret_value()
    try:
        with Connection(url, connect_timeout=REDIS_CHECK_TIMEOUT_S,
                        transport_options={"socket_timeout": REDIS_CHECK_TIMEOUT_S}) as connection:
            connection.ensure_connection(max_retries=0)
    except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors; all mean "not reachable"
        return f"cannot reach the broker at {redact_url(url)}: {redact_url(str(exc))}"
    return None


def _celery(*argv: str) -> int:
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", "-A", "parley.worker.celery_app", *argv]
    celery_main()
    return 0


def _guarded(name: str, help_text: str, run: Callable[[Settings, Sequence[str]], int]) -> Callable[
        [Sequence[str]], int]:
    def command(extra: Sequence[str]) -> int:
        if "-h" in extra or "--help" in extra:
            print(help_text, end="")
            return 0
        settings = Settings()
        problem = redis_problem(settings)
        if problem:
            _print(f"parley {name}: {problem}")
            return 1
        return run(settings, extra)

    return command


def _worker(settings: Settings, extra: Sequence[str]) -> int:
    # --quiet: no Celery banner; the worker logs one worker_started line (worker/tasks.py).
    return _celery("--quiet", "worker", "-P", settings.worker_pool, "-c", str(settings.worker_concurrency),
                   "-Q", "parley", "-l", settings.log_level, "--without-mingle", "--without-gossip", *extra)


def _beat(settings: Settings, extra: Sequence[str]) -> int:
    import os
    import tempfile

    schedule = [] if "-s" in extra else ["-s", os.path.join(tempfile.gettempdir(), "parley-beat-schedule")]
    return _celery("--quiet", "beat", "-l", settings.log_level, *schedule, *extra)


run_worker = _guarded("worker", WORKER_HELP, _worker)
run_beat = _guarded("beat", BEAT_HELP, _beat)

PASSTHROUGH = {"worker": run_worker, "beat": run_beat}
"""Subcommands whose further arguments all go to celery."""
