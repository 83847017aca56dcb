"""The Celery app's broker: PARLEY_BROKER_URL when set, else the state's Redis, with the options each
transport understands."""

from __future__ import annotations

from pydantic import SecretStr

from parley.worker.celery_app import BRPOP_TIMEOUT_S, broker_url, create_celery, transport_options
from parley.worker.settings import Settings


def test_the_broker_is_the_redis_unless_one_is_given() -> None:
    """Unset, wake-ups share the state's Redis; set, they go to the broker while state stays put."""
    state = "redis://127.0.0.1:6379/0"
    assert broker_url(Settings(_env_file=None, redis_url=state)) == state
    given = Settings(_env_file=None, redis_url=state, broker_url=SecretStr("amqp://u:p@mq:5672//"))
    assert broker_url(given) == "amqp://u:p@mq:5672//" and given.redis_url_required == state
    assert create_celery(given).conf.broker_url == "amqp://u:p@mq:5672//"


def test_redis_only_options_stay_off_amqp() -> None:
    """Pool size, no ack emulation and the BRPOP timeout exist only in kombu's Redis transport; a publisher's
    timeouts are the socket timeouts of each transport."""
    assert transport_options("redis://r:6379/0", 10) == {"max_connections": 30, "ack_emulation": False,
                                                         "polling_interval": BRPOP_TIMEOUT_S}
    assert transport_options("amqp://mq//", 10) == {}
    assert transport_options("rediss://r:6380/0", 10, 2.0)["socket_timeout"] == 2.0
    assert transport_options("amqp://mq//", 10, 2.0) == {"read_timeout": 2.0, "write_timeout": 2.0}


def test_a_publishers_app_gives_up_quickly() -> None:
    """The API's app retries a publish once, at once, and bounds the AMQP handshake; workers keep Celery's
    defaults."""
    settings = Settings(_env_file=None, redis_url="redis://127.0.0.1:6379/0")
    publisher = create_celery(settings, publish_timeout_s=2.0).conf
    assert publisher.task_publish_retry_policy["max_retries"] == 1 and publisher.broker_connection_timeout == 2.0
    assert create_celery(settings).conf.task_publish_retry_policy["max_retries"] == 3
