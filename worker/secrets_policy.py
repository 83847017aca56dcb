"""What secret a production deployment must not run with: the placeholders that ship in deploy/, .env.example
and the README, other well-known stand-ins, and (for bearer keys) anything short enough to guess.

A pure check, used by the settings validator for each secret setting, so that a copied example or a Secret
applied unedited stops the process at start-up instead of guarding it with a published password.
"""

from __future__ import annotations

MIN_KEY_CHARS = 32
"""Bearer API keys at least this long (``secrets.token_urlsafe(32)`` gives 43)."""

KNOWN_PREFIXES = ("whsec_", "sk-proj-", "sk-")
"""Stripped before the checks: a prefix alone (``sk-...``) is no key."""
PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "replace_me",
                     "placeholder", "your-key", "your_key", "yourkey", "${")
"""Text that only a placeholder contains (deploy/k8s/base/secret.yaml: ``change-me-long-random-key``,
``sk-change-me``, ``admin:change-me``, ``whsec_change-me-with-parley-webhooks-new-secret``)."""
WEAK_VALUES = frozenset({"secret", "password", "passw0rd", "s3cret", "admin", "test", "example", "default",
                         "key", "apikey", "api-key", "token", "dummy", "todo", "none", "null", "1234",
                         "12345678", "123456789", "qwerty", "letmein"})
"""Whole values that are stand-ins, compared without case."""


def _is_filler(value: str) -> bool:
    """``xxx``, ``...``, ``0000``, ``xxxx-xxxx``: one character repeated, ignoring separators."""
    return len(set(value) - set("-_.:")) <= 1


def is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    body = next((lowered[len(p):] for p in KNOWN_PREFIXES if lowered.startswith(p)), lowered)
    return (not body or _is_filler(body) or body in WEAK_VALUES or (body[0], body[-1]) == ("<", ">")
            or any(mark in lowered for mark in PLACEHOLDER_MARKS))


def check_secret_strength(value: str, *, what: str, min_length: int = MIN_KEY_CHARS) -> None:
    """Raise ``ValueError`` naming ``what`` (never quoting the value) when ``value`` is a known placeholder or
    shorter than ``min_length``."""
    if is_placeholder(value):
        raise ValueError(f"{what} is a placeholder value; set a real secret (in production parley refuses "
                         "the example values shipped in deploy/ and the README)")
    if len(value) < min_length:
        raise ValueError(f"{what} is shorter than {min_length} characters; in production use a long random "
                         "value (python -c 'import secrets; print(secrets.token_urlsafe(32))')")
