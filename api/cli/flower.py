"""``parley flower``: Flower on the broker, only with real basic auth, or open on loopback alone.

Flower's UI and API can revoke tasks and resize worker pools, so the checks run before it is started and
refuse with exit code 2 and a sentence saying what to set.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from parley.worker.settings import Settings


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


NAME = "PARLEY_FLOWER_BASIC_AUTH"


def basic_auth_problem(basic_auth: str) -> str | None:
    """What is wrong with a ``user:password[,user:password]`` value, naming the entry but never a password."""
    entries = basic_auth.split(",")
    for number, entry in enumerate(entries, start=1):
        user, colon, password = entry.strip().partition(":")
        where = f"entry {number} of {NAME}" if len(entries) > 1 else NAME
        if not colon:
            return f"{where} is not user:password"
        if not user:
            return f"{where} has an empty user name"
        if not password:
            return f"{where} (user {user!r}) has an empty password"
    return None


def flower_refusal(basic_auth: str | None, *, allow_unauthenticated: bool, address: str) -> str | None:
    """Why ``parley flower`` must not start with these settings, or ``None``."""
    if basic_auth is not None:
        problem = basic_auth_problem(basic_auth)
        return None if problem is None else (
            f"refusing to start Flower: {problem}; every entry needs a user and a password.")
    if not allow_unauthenticated:
        return (f"refusing to start Flower without {NAME} (user:password): its UI and API can revoke tasks "
                "and resize pools. Set PARLEY_FLOWER_ALLOW_UNAUTHENTICATED=true to run it open on 127.0.0.1.")
    if not is_loopback(address):
        return (f"refusing to start Flower without {NAME} on {address}: "
                "PARLEY_FLOWER_ALLOW_UNAUTHENTICATED only opens it on a loopback address "
                f"(PARLEY_FLOWER_ADDRESS=127.0.0.1). Set {NAME} to bind anything else.")
    return None


def cmd_flower(args: argparse.Namespace) -> int:
    settings = Settings()
    basic_auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else None
    refusal = flower_refusal(basic_auth, allow_unauthenticated=settings.flower_allow_unauthenticated,
                             address=settings.flower_address)
    if refusal is not None:
        print(refusal, file=sys.stderr, flush=True)
        return 2
    env = dict(os.environ)
    if basic_auth is not None:
        # Through the environment, so the password is not in the process list.
        env["FLOWER_BASIC_AUTH"] = basic_auth
    else:
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    argv = [sys.executable, "-m", "celery", "-A", "parley.worker.celery_app", "flower",
            f"--address={settings.flower_address}", f"--port={settings.flower_port}",
            # Flower keeps every task in memory; bound it (research.md §3.1).
            "--max_tasks=10000", "--persistent=False"]
    os.execvpe(argv[0], argv, env)
    return 0  # pragma: no cover - execvpe does not return
