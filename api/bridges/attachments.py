"""What a chat message's attachments become in its turn (both bridges, pure): images as ``input_image`` parts,
every other file named in the text (``[attached: report.pdf]``), so the model knows it was sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from parley.worker.request.inputs import MAX_PARTS

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""What the model providers take as images."""
IMAGE_MAX_BYTES = 5 * 1024 * 1024
"""A bigger image is named in the text, not sent (Slack's are downloaded and sent inline: the API's body
cap and the provider's image limits both stay far)."""
MAX_IMAGES = MAX_PARTS - 1
"""One part is the text."""


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    url: str
    size: int

    @property
    def is_image(self) -> bool:
        """An image the turn may carry: a known image type, within the size cap, with a URL."""
        return self.content_type in IMAGE_TYPES and 0 < self.size <= IMAGE_MAX_BYTES and bool(self.url)


def attachments_of(raw: Any, *, url: str, kind: str, name: str) -> tuple[Attachment, ...]:
    """The attachments of a platform's JSON list (``url``, ``kind``, ``name``: its field names)."""
    if not isinstance(raw, list):
        return ()
    found = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        size = item.get("size")
        content_type = str(item.get(kind) or "").split(";")[0].strip().lower()
        found.append(Attachment(name=str(item.get(name) or "file"), content_type=content_type,
                                url=str(item.get(url) or ""), size=size if isinstance(size, int) else 0))
    return tuple(found)


def images_of(attachments: Iterable[Attachment]) -> list[Attachment]:
    """The attachments that go as images (the first ``MAX_IMAGES`` of them)."""
    return [a for a in attachments if a.is_image][:MAX_IMAGES]


def turn_input(text: str, attachments: Iterable[Attachment], *,
               images: Mapping[str, str]) -> str | list[dict[str, Any]]:
    """``text`` alone without attachments; else one user message: the text with every attachment that is
    not sent as an image named after it, then an ``input_image`` per image (``images``: an attachment's
    url → the image_url to send, its own URL or a data URL; an image missing there is named instead)."""
    attachments = list(attachments)
    if not attachments:
        return text
    sent = [a for a in images_of(attachments) if images.get(a.url)]
    named = [f"[attached: {a.name}]" for a in attachments if a not in sent]
    body = "\n".join(part for part in (text, " ".join(named)) if part)
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": body}] if body else []
    parts += [{"type": "input_image", "image_url": images[a.url], "detail": "auto"} for a in sent]
    return [{"role": "user", "content": parts}]
