"""Production refuses the secrets that ship as examples (deploy/'s Secret, .env.example) and short API keys,
naming the setting and never the value; development takes anything."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from parley.worker.secrets_policy import MIN_KEY_CHARS, check_secret_strength, is_placeholder
from parley.worker.settings import Settings
from parley.worker.webhooks.signing import generate_secret

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHECKED = ("PARLEY_API_KEYS", "OPENAI_API_KEY", "PARLEY_FLOWER_BASIC_AUTH", "PARLEY_WEBHOOK_SECRET")


def shipped() -> list[tuple[str, str, str]]:
    """(file, variable, value) of every secret setting deploy/ ships a value for."""
    [secret] = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "base" / "secret.yaml").read_text()) if d]
    found = [("secret.yaml", name, value) for name, value in secret["stringData"].items() if name in CHECKED]
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        name, _, value = line.partition("=")
        if name in CHECKED:
            found.append((".env.example", name, value))
    return found


SHIPPED = shipped()


def settings_from(monkeypatch: pytest.MonkeyPatch, environment: str, **env: str) -> Settings:
    for name in [*CHECKED, "PARLEY_OPENAI_API_KEY"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARLEY_ENVIRONMENT", environment)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_every_secret_setting_has_a_shipped_example_here() -> None:
    """The check below covers the four secret settings in both example files."""
    assert {(f, n) for f, n, _ in SHIPPED} == {(f, n) for f in ("secret.yaml", ".env.example") for n in CHECKED}


@pytest.mark.parametrize(("where", "name", "value"), SHIPPED, ids=[f"{f}:{n}" for f, n, _ in SHIPPED])
def test_production_refuses_each_shipped_placeholder(monkeypatch: pytest.MonkeyPatch, where: str, name: str,
                                                     value: str) -> None:
    """A Secret applied unedited, or a copied .env.example, stops the process at start-up with the setting's
    name; development takes the same value."""
    with pytest.raises(ValidationError) as raised:
        settings_from(monkeypatch, "production", **{name: value})
    message = str(raised.value)
    assert name in message and "placeholder" in message
    assert value.partition(":")[2] not in message if ":" in value else value not in message
    assert settings_from(monkeypatch, "development", **{name: value}).environment == "development"


def test_production_takes_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long random values of each kind pass, several API keys too."""
    keys = ",".join(secrets.token_urlsafe(32) for _ in range(2))
    settings = settings_from(monkeypatch, "production", PARLEY_API_KEYS=keys, OPENAI_API_KEY="sk-proj-" + "Ab3" * 20,
                             PARLEY_FLOWER_BASIC_AUTH=f"ops:{secrets.token_urlsafe(16)}",
                             PARLEY_WEBHOOK_SECRET=generate_secret())
    assert len(settings.api_keys) == 2


def test_short_api_keys_are_refused_in_production_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second of two keys is one character short: the message says which entry and the rule."""
    short = "k" + secrets.token_hex(32)[: MIN_KEY_CHARS - 2]
    keys = f"{secrets.token_urlsafe(32)},{short}"
    with pytest.raises(ValidationError, match=f"PARLEY_API_KEYS entry 2 is shorter than {MIN_KEY_CHARS}"):
        settings_from(monkeypatch, "production", PARLEY_API_KEYS=keys)
    check_secret_strength(short + "x", what="key")
    assert len(settings_from(monkeypatch, "development", PARLEY_API_KEYS="k-one").api_keys) == 1


@pytest.mark.parametrize("value", ["change-me", "CHANGEME", "replace-me", "secret", "xxxxxxxx", "sk-...",
                                   "whsec_", "<your-api-key>", "${PARLEY_API_KEYS}", "xxxx-xxxx-xxxx", "s3cret",
                                   "sk-change-me", "admin", ""])
def test_known_stand_ins(value: str) -> None:
    """Placeholders whatever their prefix or case; real-looking values are not."""
    assert is_placeholder(value)
    with pytest.raises(ValueError, match="^the thing is a placeholder"):
        check_secret_strength(value, what="the thing", min_length=0)


def test_real_looking_values_are_not_stand_ins() -> None:
    for value in (secrets.token_urlsafe(32), generate_secret(), "sk-" + secrets.token_hex(24), "correct horse"):
        assert not is_placeholder(value), value
