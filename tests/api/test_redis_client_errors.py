"""A request that broke inside redis-py because its connection was closed under it (the asyncio cluster
client closes every connection when one pipeline meets a connection error) is a 503 to retry; the same kind
of error in parley's own code stays a 500."""

from __future__ import annotations

import pytest
from redis._parsers.helpers import parse_info

from parley.api.errors import raised_in_redis_client


def _raised(call: object) -> BaseException:
    with pytest.raises(Exception) as info:
        call()  # type: ignore[operator]
    return info.value


def test_a_none_attribute_inside_redis_py_counts_as_redis_trouble() -> None:
    """The same shape as ``'NoneType' object has no attribute 'writelines'``: redis-py code dereferencing a
    connection part that is gone."""
    assert raised_in_redis_client(_raised(lambda: parse_info(None)))


def test_the_same_error_in_parley_code_is_a_bug() -> None:
    """An AttributeError raised by parley (innermost frame outside redis-py) stays an internal error."""
    assert not raised_in_redis_client(_raised(lambda: None.splitlines()))  # type: ignore[union-attr]


def test_other_errors_from_redis_py_are_not_reclassified() -> None:
    """Only a missing attribute or a None called: redis-py's own typed errors have their handlers."""
    assert not raised_in_redis_client(ValueError("x"))
    assert not raised_in_redis_client(_raised(lambda: int("x")))


def test_a_closed_transport_under_redis_py_counts_as_redis_trouble() -> None:
    """asyncio's RuntimeError for a write on the transport the cascade closed, raised under a redis-py call
    (seen in CI on the cluster), is Redis trouble; the same RuntimeError outside redis-py, or another
    RuntimeError, is not."""
    import asyncio

    from redis._parsers.helpers import parse_info as from_redis

    def closed() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True reading=False>; the "
                           "handler is closed")

    def under_redis() -> None:
        try:
            from_redis(None)
        except AttributeError:
            closed()  # raised while a redis-py frame is in the traceback's chain below

    assert not raised_in_redis_client(_raised(closed))
    assert not raised_in_redis_client(RuntimeError("closed=True"))
    assert asyncio  # the error is asyncio's; no loop is needed to make its shape
    assert not raised_in_redis_client(_raised(under_redis))  # a redis frame only in the context, not the stack
    # A frame of redis-py's on the stack (a function compiled under its directory), the transport error below.
    from parley.api.errors import REDIS_CLIENT_DIR

    namespace: dict[str, object] = {"closed": closed}
    exec(compile("def send():\n    closed()\n", REDIS_CLIENT_DIR + "connection_like.py", "exec"), namespace)
    assert raised_in_redis_client(_raised(namespace["send"]))
