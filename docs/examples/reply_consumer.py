"""Consume every reply at least once with a Redis consumer group, the way a bot's sender process would.

    python docs/examples/reply_consumer.py --redis-url redis://127.0.0.1:6379/0 --group my-bot --name pod-1 \
        [--metadata bot=web] [--start 0]

Run several with the same --group and different --name: each reply goes to one of them; a reply taken by a
consumer that dies before acknowledging it is handed to another after --min-idle-ms. Deliveries can repeat
(at-least-once), so handle each event id once (here: a Redis SET NX with a TTL). A new group starts at the
newest reply; --start 0 makes it read the stream's history first. --metadata KEY=VALUE (repeatable) keeps only
replies to turns sent with that metadata, so several bots can share one parley.
"""

from __future__ import annotations

import argparse

import redis

from parley import ReplyConsumer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--group", default="my-bot")
    parser.add_argument("--name", default="consumer-1")
    parser.add_argument("--min-idle-ms", type=int, default=30_000)
    parser.add_argument("--start", default="$", help="where a new group starts: $ (newest) or 0 (history)")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    metadata = dict(pair.split("=", 1) for pair in args.metadata)
    consumer = ReplyConsumer(client, group=args.group, name=args.name, min_idle_ms=args.min_idle_ms,
                             start=args.start, metadata=metadata)
    for delivery in consumer.deliveries():
        event = delivery.event
        if client.set(f"my-bot:handled:{event.id}", 1, nx=True, ex=86_400):
            if event.type == "turn.completed":
                print(f"reply to {event.metadata or {}}: {event.output_text}", flush=True)
            elif event.type == "turn.failed":
                print(f"turn {event.turn_id} failed: {event.error.message}", flush=True)
            else:
                print(f"turn {event.turn_id} was cancelled", flush=True)
        consumer.ack(delivery)


if __name__ == "__main__":
    main()
