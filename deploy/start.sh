#!/bin/sh
# Container entry point: wait for Redis (and PARLEY_BROKER_URL when set), then run one parley process
# (api | worker | beat | flower | webhooks run).
set -eu
mkdir -p "${PROMETHEUS_MULTIPROC_DIR:-/tmp/parley-metrics}"
python - <<'PY'
import os, sys, time
import redis
url = os.environ.get("PARLEY_REDIS_URL")
if not url:
    sys.exit("PARLEY_REDIS_URL is required")
deadline = time.monotonic() + 60
while True:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        break
    except redis.RedisError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"Redis not reachable: {type(exc).__name__}")
        time.sleep(1)
broker = os.environ.get("PARLEY_BROKER_URL")
if broker:
    from kombu import Connection
    while True:
        try:
            with Connection(broker, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=0)
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                sys.exit(f"broker not reachable: {type(exc).__name__}")
            time.sleep(1)
PY
exec parley "$@"
