"""The ingress baseline: a bare FastAPI endpoint that validates a body and does one Redis LPUSH."""

from __future__ import annotations

import os
import uuid

import redis.asyncio
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
client = redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
    os.environ["BENCH_REDIS_URL"], max_connections=256, timeout=10))


class Body(BaseModel):
    input: str


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/conversations/{conversation_id}/turns", status_code=202)
async def post(conversation_id: str, body: Body) -> dict[str, str]:
    turn_id = uuid.uuid4().hex
    await client.lpush(f"bare:{conversation_id}", body.input)
    return {"id": turn_id}
