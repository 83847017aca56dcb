"""Chat platform bridges: Slack and Discord apps connected to parley with a few settings.

Each platform has an inbound side, served by the API (signatures checked, retries deduplicated, a thread or
channel mapped to a conversation, the message enqueued as a turn), and an outbound relay process that follows
the turns its bridge accepted (``announce``) and posts their replies back while they are written. The
platforms' own libraries are optional extras (``parley[slack]``, ``parley[discord]``); a bridge is mounted
only when its settings are given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from parley.worker.settings import Settings


def mount(app: FastAPI, settings: Settings) -> None:
    """Add the inbound routes of every bridge whose settings are given."""
    if settings.slack_signing_secret is not None:
        from .slack.inbound import mount as mount_slack

        mount_slack(app, settings)
    if settings.discord_public_key is not None:
        from .discord.inbound import mount as mount_discord

        mount_discord(app, settings)
