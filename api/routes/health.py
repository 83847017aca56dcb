"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> dict[str, str]:
    await services.ingress.client.ping()  # a RedisError becomes the 503 envelope
    return {"status": "ready"}
