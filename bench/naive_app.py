"""The naive baseline parley is compared with: one Celery task per turn, no ordering, no lease, no recovery;
each task makes the same upstream call and publishes the reply."""

from __future__ import annotations

import os

import openai
import redis
from celery import Celery
from celery.signals import worker_ready

STREAM = os.environ.get("BENCH_STREAM") == "1"
app = Celery("naive", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(task_ignore_result=True, task_default_queue="naive", worker_hijack_root_logger=False,
                broker_transport_options={"max_connections": 600}, broker_pool_limit=600)
client = openai.OpenAI(base_url=os.environ["BENCH_UPSTREAM"], api_key="x", max_retries=0)
publisher = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
    os.environ["BENCH_REDIS_URL"], max_connections=600, timeout=30))


@worker_ready.connect
def _warm(**_: object) -> None:
    from parley.worker.run.upstream import warm_up

    warm_up()


@app.task(name="naive.turn")
def turn(conversation_id: str, text: str, turn_id: str) -> None:
    if STREAM:
        output = ""
        for event in client.responses.create(conversation=conversation_id, input=text, model="m", stream=True):
            if event.type == "response.output_text.delta":
                output += event.delta
    else:
        output = client.responses.create(conversation=conversation_id, input=text, model="m").output_text
    publisher.publish("naive:replies", f"{turn_id} {len(output)}")
