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
