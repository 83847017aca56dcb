"""``parley keys``: make an API key (the secret is printed once; only its hash is configured) and check a
keys file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..auth.keys import KeyConfigError, build_index, format_entry, new_key, parse_lines
from ..auth.scopes import ALL_SCOPES


def add_key_commands(sub: Any) -> None:
    """Add ``keys`` and its subcommands to the ``parley`` parser's subparsers."""
    keys = sub.add_parser("keys", help="make API keys with a tenant and scopes; check a keys file")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    new = actions.add_parser("new", help="print a new key's secret (once) and the entry that configures it",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    new.add_argument("--name", required=True, help="the key's name, shown in the audit log")
    new.add_argument("--tenant", default="default", help="the tenant whose conversations it reaches")
    new.add_argument("--scopes", default="turns:write+turns:read+conversations:write+conversations:read",
                     help=f"scopes joined by '+', of: {', '.join(sorted(ALL_SCOPES))}")
    new.set_defaults(func=cmd_new)
    check = actions.add_parser("check", help="validate a PARLEY_API_KEYS_FILE and list its keys")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_check)


def cmd_new(args: argparse.Namespace) -> int:
    try:
        secret, key = new_key(args.name, args.tenant, args.scopes.split("+"))
    except KeyConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"secret (give it to the bot; it is not stored anywhere): {secret}", file=sys.stderr)
    print(format_entry(key))  # stdout only the entry, so `>> keys.txt` appends just that
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        index = build_index(parse_lines(args.file.read_text()))
    except (OSError, KeyConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key in sorted(index.values(), key=lambda k: k.name):
        print(f"{key.name}  tenant={key.tenant}  scopes={'+'.join(sorted(key.scopes))}")
    return 0
