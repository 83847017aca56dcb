"""A URL that may hold a password (the Redis URL): ``str()`` and ``repr()`` show it with the password masked,
so the Settings object, a log line or a traceback that holds it never shows the password; the plain URL is
``get_secret_value()``, for connecting only."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

MASK = "[redacted]"
"""The same word worker/log.py masks secrets with, so a log reads one way wherever the mask came from."""
PASSWORD_PARAMS = ("password",)
"""Query parameters redis-py reads as the password (``redis://host/0?password=...``)."""


def _split(url: str) -> tuple[str, str, str] | None:
    """``(userinfo, host_and_port, query)`` as redis-py reads them, or None for a URL it could not parse."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    # rpartition, as urllib does: an unencoded "@" in a password belongs to the password.
    userinfo, _, host = parts.netloc.rpartition("@")
    return userinfo, host, parts.query


def passwords(url: str) -> list[str]:
    """Every password ``url`` holds, as written and as decoded (redis-py sends the decoded one)."""
    split = _split(url)
    if split is None:
        return []
    userinfo, _, query = split
    found = [userinfo.partition(":")[2]] if ":" in userinfo else []
    params = (part.partition("=") for part in query.split("&"))
    found += [value for name, _, value in params if name in PASSWORD_PARAMS]
    return [form for value in found if value for form in dict.fromkeys((value, unquote(value)))]


def mask_password(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) replaced by ``MASK``; all of
    it masked when it cannot be parsed, since then nobody can say where a password would be."""
    split = _split(url)
    if split is None:
        return MASK
    userinfo, host, query = split
    parts = urlsplit(url)
    if ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    else:
        netloc = parts.netloc
    params = [f"{name}={MASK}" if name in PASSWORD_PARAMS and sep else f"{name}{sep}{value}"
              for name, sep, value in (p.partition("=") for p in query.split("&"))] if query else []
    # Put together by hand: urlunsplit would turn unix:///path into unix:/path.
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{'&'.join(params)}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


class SecretUrl(SecretStr):
    """A ``SecretStr`` shown as the URL with its password masked (``redis://:[redacted]@host:6379/0``) rather
    than as stars only: where a process connects is worth seeing, the password never is."""

    def _display(self) -> str:
        return mask_password(self.get_secret_value())
