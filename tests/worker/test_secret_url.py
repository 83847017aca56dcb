"""The Redis URL is a secret: the Settings object, its JSON, startup lines and log lines show it with the
password masked, while the processes still connect with the plain URL."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from parley.api.cli.stack import LocalStack
from parley.worker.log import redact_text, redact_url, register_secrets
from parley.worker.secret_url import SecretUrl, mask_password, passwords
from parley.worker.settings import Settings

PASSWORD = "hunter2-redis-pw"


@pytest.mark.parametrize(("url", "shown", "found"), [
    ("redis://:pw-123@h:6379/0", "redis://:[redacted]@h:6379/0", ["pw-123"]),
    ("rediss://parley:pw-123@h:6380/1", "rediss://parley:[redacted]@h:6380/1", ["pw-123"]),
    # redis-py decodes the password and splits user from host at the last "@", as urllib does.
    ("redis://:p%40ss@h/0", "redis://:[redacted]@h/0", ["p%40ss", "p@ss"]),
    ("redis://:p@ss@h/0", "redis://:[redacted]@h/0", ["p@ss"]),
    ("redis://h/0?db=1&password=pw-9", "redis://h/0?db=1&password=[redacted]", ["pw-9"]),
    ("unix:///run/redis.sock?password=pw-9", "unix:///run/redis.sock?password=[redacted]", ["pw-9"]),
    ("rediss://h:6380/0?ssl_cert_reqs=required", "rediss://h:6380/0?ssl_cert_reqs=required", []),
    ("redis://user-only@h/0", "redis://user-only@h/0", []),
    ("redis://[::1", "[redacted]", []),  # unparseable: nobody can say where a password would be
])
def test_the_password_is_masked_wherever_redis_py_would_read_one(url: str, shown: str,
                                                                  found: list[str]) -> None:
    """The user part and the ``password=`` parameter are masked, the rest is kept; every form of the password
    (as written and decoded) is found, for masking by value."""
    assert mask_password(url) == shown
    assert passwords(url) == found


def test_settings_never_show_the_redis_password() -> None:
    """``repr`` and ``str`` of Settings and of the field show the URL with the password masked,
    ``model_dump_json`` shows stars (pydantic's own choice for secrets); ``redis_url_required`` is the plain
    URL, and a client built from it sends the password."""
    url = f"redis://:{PASSWORD}@127.0.0.1:6379/0"
    settings = Settings(_env_file=None, redis_url=url)
    assert isinstance(settings.redis_url, SecretUrl)
    for shown in (repr(settings), str(settings), str(settings.redis_url), repr(settings.redis_url),
                  f"{settings.redis_url}"):
        assert PASSWORD not in shown and "redis://:[redacted]@127.0.0.1:6379/0" in shown, shown
    assert PASSWORD not in settings.model_dump_json()
    assert settings.redis_url_required == url
    assert redis.Redis.from_url(settings.redis_url_required).connection_pool.connection_kwargs["password"] \
        == PASSWORD


def test_the_redis_password_is_masked_by_value_in_any_text() -> None:
    """Once the settings are registered, the password is masked wherever it shows up, also without its URL
    (an error message quoting only the AUTH argument), and in its decoded form."""
    register_secrets(Settings(_env_file=None, redis_url="redis://:pa%2Fss-w0rd-x@127.0.0.1:6379/0"))
    masked = redact_text("AUTH pa/ss-w0rd-x failed; sent pa%2Fss-w0rd-x")
    assert masked == "AUTH [redacted] failed; sent [redacted]"


def test_startup_lines_show_where_redis_is_but_not_its_password(tmp_path: Path) -> None:
    """``redact_url`` takes the settings' field or a plain URL; ``parley up``'s banner with an external Redis
    shows host and port, not the password."""
    settings = Settings(_env_file=None, redis_url=f"redis://app:{PASSWORD}@10.0.0.5:6379/0")
    assert redact_url(settings.redis_url) == "redis://app:[redacted]@10.0.0.5:6379/0"
    assert redact_url(settings.redis_url_required) == "redis://app:[redacted]@10.0.0.5:6379/0"
    assert redact_url(None, "(not set)") == "(not set)"
    banner = LocalStack(settings, data_dir=tmp_path, api_port=8000).banner()
    assert "redis://app:[redacted]@10.0.0.5:6379/0" in banner and PASSWORD not in banner
