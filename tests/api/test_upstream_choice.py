"""`parley up` says which upstream it uses and why: an exported OpenAI key silently switching to real (billed)
OpenAI is what a new user hit."""

from __future__ import annotations

import pytest

from parley.api.cli.stack import choose_upstream
from parley.worker.settings import Settings


@pytest.mark.parametrize(("env", "force", "emulator", "reason"), [
    ({}, False, True, "no OPENAI_API_KEY is set"),
    ({"OPENAI_API_KEY": "sk-x"}, False, False, "OPENAI_API_KEY is set; `parley up --emulator` uses"),
    ({"PARLEY_OPENAI_API_KEY": "sk-x"}, False, False, "PARLEY_OPENAI_API_KEY is set"),
    ({"OPENAI_API_KEY": "sk-x"}, True, True, "--emulator was given (ignoring the OpenAI key that is set)"),
    ({"PARLEY_OPENAI_BASE_URL": "http://llm.internal/v1"}, False, False, "PARLEY_OPENAI_BASE_URL is set"),
])
def test_the_upstream_and_the_reason(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], force: bool,
                                     emulator: bool, reason: str) -> None:
    """The emulator without a key or with --emulator; real OpenAI, naming the variable, with a key; the given
    server with PARLEY_OPENAI_BASE_URL."""
    for name in ("OPENAI_API_KEY", "PARLEY_OPENAI_API_KEY", "PARLEY_OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    upstream = choose_upstream(Settings(_env_file=None), force_emulator=force)  # type: ignore[call-arg]
    assert upstream.emulator is emulator
    assert upstream.reason.startswith(reason)
    if not emulator and "OPENAI_API_KEY" in reason:
        assert "real OpenAI" in upstream.description
