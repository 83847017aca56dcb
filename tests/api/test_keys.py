"""API key entries and the key ring: pure parsing, hashing and file reloads (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.api.auth.keys import (
    KeyConfigError,
    KeyRing,
    build_index,
    digest,
    format_entry,
    new_key,
    parse_entry,
)
from parley.api.auth.scopes import ADMIN, ALL_SCOPES, TURNS_READ, TURNS_WRITE, Principal


def test_a_hashed_entry_names_tenant_and_scopes() -> None:
    """``name:tenant:scope+scope:sha256`` keeps only the hash; scopes with their ``:`` parse whole."""
    key = parse_entry(f"slack:acme:turns:write+turns:read:{digest('s3cret')}", position=1)
    assert (key.name, key.tenant, key.scopes) == ("slack", "acme", frozenset({TURNS_WRITE, TURNS_READ}))
    assert key.digest == digest("s3cret") and "s3cret" not in format_entry(key)
    assert parse_entry(format_entry(key), position=1) == key


def test_a_plain_secret_is_the_default_tenant_with_every_scope() -> None:
    """Keys configured before tenants keep working: default tenant, every scope, named by position."""
    key = parse_entry("an-old-plain-key", position=2)
    assert (key.name, key.tenant, key.scopes) == ("key-2", "default", ALL_SCOPES)


@pytest.mark.parametrize(("entry", "says"), [
    (f"bot:acme:turns:wrote:{digest('x')}", "unknown scope 'turns:wrote'"),
    (f"bot:acme::{digest('x')}", "at least one scope"),
    (f"b o t:acme:admin:{digest('x')}", "name"),
    (f"bot:ac/me:admin:{digest('x')}", "tenant"),
    (f"bot:acme:admin:{digest('x')[:-1]}", "64 hex"),
])
def test_bad_entries_are_refused_without_echoing_secrets(entry: str, says: str) -> None:
    """A mistyped entry is an error naming its position and what is wrong, never a plain key that happens to
    hold every scope."""
    with pytest.raises(KeyConfigError, match="entry 3") as error:
        parse_entry(entry, position=3)
    assert says in str(error.value)


def test_names_are_unique() -> None:
    with pytest.raises(KeyConfigError, match="used twice"):
        build_index([f"bot:a:admin:{digest('1')}", f"bot:b:admin:{digest('2')}"])


def test_new_key_makes_a_secret_that_matches_its_entry() -> None:
    """``parley keys new``: the printed secret finds the printed entry's key, and two secrets differ."""
    secret, key = new_key("bot", "acme", [TURNS_WRITE])
    ring = KeyRing([format_entry(key)])
    assert ring.find(secret) == key and ring.find(secret + "x") is None
    assert new_key("bot", "acme", [TURNS_WRITE])[0] != secret and len(secret) >= 32


def test_file_changes_are_picked_up_and_bad_files_keep_the_old_keys(tmp_path: Path) -> None:
    """The ring re-reads its file when it changes (checked at most once a second); a file that fails to
    parse raises and leaves the keys last read in force."""
    path = tmp_path / "keys"
    path.write_text(f"a:t:admin:{digest('one')}\n")
    ring = KeyRing([], str(path))
    assert ring.find("one") is not None
    path.write_text(f"# rotated\nb:t:admin:{digest('two')}\n")
    assert ring.reload(now=0.5) is False  # within a second of the last check: not even looked at
    assert ring.reload(now=10.0) is True
    assert ring.find("one") is None and ring.find("two") is not None
    path.write_text("a:b:c\n")
    with pytest.raises(KeyConfigError):
        ring.reload(now=20.0)
    assert ring.find("two") is not None


def test_admin_holds_every_scope_but_only_its_tenant() -> None:
    admin = Principal(key="ops", tenant="acme", scopes=frozenset({ADMIN}))
    assert admin.allows(TURNS_WRITE) and admin.owns("acme")
    assert not admin.owns("globex") and not admin.owns(None)
    assert Principal(key="k", tenant="default", scopes=frozenset({TURNS_READ})).owns(None)


def test_production_refuses_plain_placeholder_keys_from_the_file_too(tmp_path: Path) -> None:
    """A keys file read in production gets the same check as PARLEY_API_KEYS: a plain placeholder or short
    key is refused (naming the entry, not the value); hashed entries and long random keys pass."""
    path = tmp_path / "keys"
    path.write_text("change-me-long-random-key\n")
    with pytest.raises(KeyConfigError, match="entry 1 is a placeholder"):
        KeyRing([], str(path), strict=True)
    path.write_text(f"bot:t:admin:{digest('x')}\n{'k' * 20}-{'z' * 20}\n")
    assert len(KeyRing([], str(path), strict=True).index) == 2
    path.write_text("short\n")
    assert len(KeyRing([], str(path)).index) == 1  # development: anything goes
