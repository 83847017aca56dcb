"""The emulator's key check: OpenAI's 401 for a wrong key, so parley's handling of one can be tested."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from . import objects
from .faults import EmulatorConfig


class KeyCheck:
    """OpenAI's answer to a wrong key, for ``/v1`` when ``config.api_keys`` is set (read per request, so a
    test can change it on a running server)."""

    def __init__(self, app: ASGIApp, config: EmulatorConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.config.api_keys and scope["path"].startswith("/v1/"):
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            key = header.removeprefix("Bearer ").strip()
            if key not in self.config.api_keys:
                masked = f"{key[:3]}{'*' * max(0, len(key) - 7)}{key[-4:]}" if len(key) > 7 else key
                shown = f"{key} (Authorization: {header})" if self.config.echo_rejected_key else masked
                body = objects.error_body(
                    f"Incorrect API key provided: {shown}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.", param=None, code="invalid_api_key")
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)
