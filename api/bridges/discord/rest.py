"""The few Discord REST calls the bridge makes, with Discord's rate limits honoured: a bucket that says it is
empty (``X-RateLimit-Remaining: 0``) is waited out for its ``X-RateLimit-Reset-After``, and a 429 for its
``Retry-After``. The interaction webhooks need no bot token; the channel and command routes do.

URLs hold interaction tokens, so nothing here logs one: log lines name the route, never the path."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx

from parley.worker.log import get_logger

log = get_logger(__name__)

DEFAULT_API_URL = "https://discord.com/api/v10"
MAX_ATTEMPTS = 6
MAX_WAIT_S = 60.0
"""A rate-limit wait longer than this is Discord telling us to stop: give up on the call."""
INVALID_WEBHOOK_TOKEN = 50027
UNKNOWN_WEBHOOK = 10015


class DiscordError(Exception):
    """Discord refused a call (4xx other than 429, or still failing after the retries)."""

    def __init__(self, route: str, status: int, code: int | None, message: str) -> None:
        super().__init__(f"{route}: HTTP {status} (code {code}): {message[:200]}")
        self.route, self.status, self.code = route, status, code

    @property
    def token_expired(self) -> bool:
        """The interaction token no longer works (its 15 minutes are over): code 50027 (or 10015), or a 401
        for a webhook route (which needs no other credential)."""
        return self.code in (INVALID_WEBHOOK_TOKEN, UNKNOWN_WEBHOOK) or (
            self.route.startswith("webhook") and self.status == 401)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class DiscordRest:
    def __init__(self, http: httpx.AsyncClient, *, api_url: str | None = None,
                 bot_token: str | None = None) -> None:
        self.http, self.bot_token = http, bot_token
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self._blocked_until: dict[str, float] = {}
        """Per route: until when its bucket is empty (monotonic seconds)."""

    async def call(self, route: str, method: str, path: str, *, json: Any = None, bot: bool = False,
                   params: dict[str, str] | None = None, major: str = "") -> httpx.Response:
        """One call, retried through rate limits and server errors. ``route`` is what a log line shows;
        with ``major`` (Discord's major parameter: a webhook's token, a channel) it names the rate-limit
        bucket, so one reply's empty bucket does not hold up the others. ``bot`` sends the bot token."""
        # Hashed: the bucket's name must not be an interaction token, even in memory for a debugger to show.
        bucket = f"{route}:{hashlib.blake2b(major.encode(), digest_size=6).hexdigest()}"
        headers = {"authorization": f"Bot {self.bot_token}"} if bot and self.bot_token else {}
        status = 0  # no answer at all
        for attempt in range(1, MAX_ATTEMPTS + 1):
            wait = self._blocked_until.get(bucket, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, MAX_WAIT_S))
            try:
                response = await self.http.request(method, f"{self.api_url}{path}", json=json,
                                                   headers=headers, params=params)
            except httpx.HTTPError as exc:
                log.warning("discord_call_failed", route=route, attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(min(2.0 ** attempt * 0.1, 5.0))
                continue
            self._note_bucket(bucket, response)
            status = response.status_code
            if response.status_code == 429:
                retry_after = self._retry_after(response)
                log.info("discord_rate_limited", route=route, retry_after_s=retry_after)
                if retry_after > MAX_WAIT_S:
                    break
                self._blocked_until[bucket] = time.monotonic() + retry_after
                continue
            if response.status_code >= 500:
                await asyncio.sleep(min(2.0 ** attempt * 0.1, 5.0))
                continue
            if response.status_code >= 400:
                raise self._error(route, response)
            return response
        raise DiscordError(route, status, None, "rate limited or failing past the retries")

    def _note_bucket(self, bucket: str, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining")
        reset_after = _float(response.headers.get("x-ratelimit-reset-after"))
        if remaining == "0" and reset_after is not None:
            self._blocked_until[bucket] = time.monotonic() + reset_after

    @staticmethod
    def _retry_after(response: httpx.Response) -> float:
        seconds = _float(response.headers.get("retry-after"))
        if seconds is None:
            try:
                seconds = float(response.json().get("retry_after", 1.0))
            except (ValueError, AttributeError):
                seconds = 1.0
        return max(0.0, seconds)

    @staticmethod
    def _error(route: str, response: httpx.Response) -> DiscordError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("code") if isinstance(body.get("code"), int) else None
        return DiscordError(route, response.status_code, code, str(body.get("message", response.text)))

    # --- the routes ------------------------------------------------------------------------------------

    async def edit_original(self, application_id: str, token: str, content: str) -> None:
        await self.call("webhook_original", "PATCH", f"/webhooks/{application_id}/{token}/messages/@original",
                        json={"content": content, "allowed_mentions": {"parse": []}}, major=token)

    async def follow_up(self, application_id: str, token: str, content: str) -> str:
        """A follow-up message; returns its id."""
        response = await self.call("webhook_followup", "POST", f"/webhooks/{application_id}/{token}",
                                   json={"content": content, "allowed_mentions": {"parse": []}},
                                   params={"wait": "true"}, major=token)
        return str(response.json()["id"])

    async def edit_follow_up(self, application_id: str, token: str, message_id: str, content: str) -> None:
        path = f"/webhooks/{application_id}/{token}/messages/{message_id}"
        await self.call("webhook_message", "PATCH", path,
                        json={"content": content, "allowed_mentions": {"parse": []}}, major=token)

    async def delete_follow_up(self, application_id: str, token: str, message_id: str) -> None:
        path = f"/webhooks/{application_id}/{token}/messages/{message_id}"
        await self.call("webhook_delete", "DELETE", path, major=token)

    async def channel_message(self, channel_id: str, content: str, *, reply_to: str | None = None) -> str:
        """A message in the channel (bot token), as a reply to ``reply_to`` if given; returns its id."""
        body: dict[str, Any] = {"content": content, "allowed_mentions": {"parse": [], "replied_user": False}}
        if reply_to:
            body["message_reference"] = {"message_id": reply_to, "fail_if_not_exists": False}
        response = await self.call("channel_message", "POST", f"/channels/{channel_id}/messages", bot=True,
                                   json=body, major=channel_id)
        return str(response.json()["id"])

    async def edit_channel_message(self, channel_id: str, message_id: str, content: str) -> None:
        await self.call("channel_edit", "PATCH", f"/channels/{channel_id}/messages/{message_id}", bot=True,
                        json={"content": content, "allowed_mentions": {"parse": []}}, major=channel_id)

    async def delete_channel_message(self, channel_id: str, message_id: str) -> None:
        await self.call("channel_delete", "DELETE", f"/channels/{channel_id}/messages/{message_id}", bot=True,
                        major=channel_id)

    async def overwrite_commands(self, application_id: str, commands: list[dict[str, Any]]) -> Any:
        response = await self.call("commands", "PUT", f"/applications/{application_id}/commands", bot=True,
                                   json=commands)
        return response.json()
