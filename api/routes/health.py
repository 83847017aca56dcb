"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response

from parley.worker import metrics

from ..deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> dict[str, str]:
    await services.ingress.client.ping()  # a RedisError becomes the 503 envelope
    return {"status": "ready"}


@router.get("/metrics")
async def prometheus_metrics(services: ServicesDep) -> Response:
    """Prometheus text: this process's counters, plus the backlog gauges the reaper keeps in Redis."""
    backlog = await services.ingress.backlog()
    circuits = await services.ingress.open_circuits()
    return Response(metrics.render(backlog, circuits), media_type="text/plain; version=0.0.4; charset=utf-8")
