"""``parley flower`` starts only with real basic auth, or open on loopback alone (its UI and API can revoke
tasks and resize pools)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from parley.api.cli.flower import flower_refusal, is_loopback


@pytest.mark.parametrize(("basic_auth", "words"), [
    ("admin:", "user 'admin') has an empty password"), (":s3cret", "has an empty user name"),
    ("admin", "is not user:password"), ("ops:pw1,admin:", "entry 2 of PARLEY_FLOWER_BASIC_AUTH"),
    ("ops:pw1,", "entry 2 of PARLEY_FLOWER_BASIC_AUTH is not user:password"),
])
def test_an_entry_without_user_or_password_is_refused(basic_auth: str, words: str) -> None:
    """Flower would accept ``admin:`` as a login with no password; parley refuses it, on any address."""
    for address in ("127.0.0.1", "0.0.0.0"):
        refusal = flower_refusal(basic_auth, allow_unauthenticated=True, address=address)
        assert refusal is not None and words in refusal and "pw1" not in refusal


def test_unauthenticated_only_on_loopback() -> None:
    """PARLEY_FLOWER_ALLOW_UNAUTHENTICATED opens Flower on a loopback address, never on a public bind."""
    assert flower_refusal(None, allow_unauthenticated=True, address="127.0.0.1") is None
    assert flower_refusal(None, allow_unauthenticated=True, address="::1") is None
    for address in ("0.0.0.0", "10.0.0.5", "::", "flower.internal", ""):
        refusal = flower_refusal(None, allow_unauthenticated=True, address=address)
        assert refusal is not None and "loopback" in refusal and "PARLEY_FLOWER_BASIC_AUTH" in refusal
    refusal = flower_refusal(None, allow_unauthenticated=False, address="127.0.0.1")
    assert refusal is not None and "PARLEY_FLOWER_ALLOW_UNAUTHENTICATED" in refusal
    assert flower_refusal("admin:s3cret,ops:pw", allow_unauthenticated=False, address="0.0.0.0") is None
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and not is_loopback("0.0.0.0")


@pytest.mark.parametrize("env", [
    {"PARLEY_FLOWER_BASIC_AUTH": "admin:"},
    {"PARLEY_FLOWER_ALLOW_UNAUTHENTICATED": "true", "PARLEY_FLOWER_ADDRESS": "0.0.0.0"},
])
def test_the_command_exits_2_with_the_reason(env: dict[str, str]) -> None:
    """The real command refuses before starting anything: exit code 2 and one sentence on stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_FLOWER_")}
    result = subprocess.run([sys.executable, "-m", "parley", "flower"], env={**clean, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("refusing to start Flower")
