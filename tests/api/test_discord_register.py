"""``parley discord register`` against the fake Discord: the slash command (named by PARLEY_DISCORD_COMMAND,
one required string option ``prompt``) sent as a bulk overwrite with the bot token; a wrong token is
refused without a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from discord_fake import BOT_TOKEN, FakeDiscord, fake_app

from parley.api.cli import main
from parley.worker.local.background import BackgroundServer

APP_ID = "1100000000000000001"


@pytest.fixture(name="fake")
def _fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    fake = FakeDiscord()
    with BackgroundServer(fake_app(fake)) as server:
        monkeypatch.setenv("PARLEY_DISCORD_API_URL", server.url)
        monkeypatch.setenv("PARLEY_DISCORD_APPLICATION_ID", APP_ID)
        monkeypatch.setenv("PARLEY_DISCORD_BOT_TOKEN", BOT_TOKEN)
        monkeypatch.setenv("PARLEY_DISCORD_COMMAND", "chat")
        yield fake


def test_register_overwrites_the_commands_with_the_bridge_command(fake: FakeDiscord,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """One global command named from the settings, with the ``prompt`` string option the inbound side reads
    and an optional ``file`` attachment; registering again overwrites it (one command, not two); the token
    is not printed."""
    assert main(["discord", "register"]) == 0
    assert main(["discord", "register"]) == 0
    (command,) = fake.commands[APP_ID]
    assert command["name"] == "chat" and command["type"] == 1
    assert command["options"] == [{"type": 3, "name": "prompt", "description": "What to ask",
                                   "required": True},
                                  {"type": 11, "name": "file", "required": False,
                                   "description": "An image or a file to ask about"}]
    err = capsys.readouterr().err
    assert "/chat" in err and BOT_TOKEN not in err


def test_register_with_a_wrong_token_fails_cleanly(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Discord's 401 is reported in a sentence and exit status 1; without a token the command says what to
    set (status 2)."""
    monkeypatch.setenv("PARLEY_DISCORD_BOT_TOKEN", "not-the-token")
    assert main(["discord", "register"]) == 1
    assert "refused" in capsys.readouterr().err and APP_ID not in fake.commands
    monkeypatch.delenv("PARLEY_DISCORD_BOT_TOKEN")
    assert main(["discord", "register"]) == 2
    assert "PARLEY_DISCORD_BOT_TOKEN" in capsys.readouterr().err
