"""Slack's images downloaded for a turn: ``url_private`` needs the bot token, so the image goes to the model
inline, as a data URL. Done before the event's answer (Bolt's ``process_before_response``), so the whole
download is bounded well inside Slack's 3 seconds; an image that fails, is too big or is not an image is
named in the turn's text instead."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import urlsplit

import httpx

from parley.worker.log import get_logger

from ..attachments import IMAGE_MAX_BYTES, Attachment, images_of

log = get_logger(__name__)

DOWNLOAD_BUDGET_S = 1.5
"""All of a message's images together; the rest of the 3 s is for the enqueue and the answer."""
SLACK_FILE_HOSTS = frozenset({"files.slack.com"})
"""Where the bot token may be sent; plus the host of PARLEY_SLACK_API_URL (a proxy, the tests' fake)."""


class TooBig(ValueError):
    """The image is bigger than the cap (whatever its ``size`` said)."""


def token_may_go_to(url: str, api_url: str | None) -> bool:
    host = urlsplit(url).hostname
    hosts = SLACK_FILE_HOSTS | ({urlsplit(api_url).hostname} if api_url else set())
    return urlsplit(url).scheme in ("https", "http") and host is not None and host in hosts


async def _one(http: httpx.AsyncClient, image: Attachment, token: str) -> str:
    async with http.stream("GET", image.url, headers={"authorization": f"Bearer {token}"}) as response:
        response.raise_for_status()
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):  # Slack's login page, for a token it does not take
            raise ValueError(f"not an image: {content_type or 'no type'}")
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > IMAGE_MAX_BYTES:
                raise TooBig(f"more than {IMAGE_MAX_BYTES} bytes")
    return f"data:{image.content_type};base64,{base64.b64encode(bytes(data)).decode()}"


async def download_images(files: tuple[Attachment, ...], *, token: str, api_url: str | None,
                          budget_s: float = DOWNLOAD_BUDGET_S) -> dict[str, str]:
    """``url_private`` → data URL of each of ``files``' images that downloaded within the budget."""
    wanted = [image for image in images_of(files) if token_may_go_to(image.url, api_url)]
    if not wanted:
        return {}
    async with httpx.AsyncClient(timeout=budget_s, follow_redirects=False) as http:
        tasks = [asyncio.create_task(_one(http, image, token)) for image in wanted]
        done, pending = await asyncio.wait(tasks, timeout=budget_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    images: dict[str, str] = {}
    for image, task in zip(wanted, tasks, strict=True):
        if task in done and task.exception() is None:
            images[image.url] = task.result()
        else:
            error = "timeout" if task not in done else type(task.exception()).__name__
            log.warning("slack_file_not_downloaded", file=image.name, error=error)
    return images
