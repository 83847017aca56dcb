"""The Lua scripts in ``worker/store/lua/``, loaded once, run by SHA with a fallback to EVAL after a server
restart.

Each script comes in two variants that differ in one line, ``SHARDED_PUBSUB``: on Redis Cluster (a cluster
client) the conversation channel is published with ``SPUBLISH``, so its messages stay on the shard that holds
the conversation's keys instead of being broadcast to every node; one Redis keeps ``PUBLISH``, which plain
``SUBSCRIBE``/``PSUBSCRIBE`` clients receive.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import redis
import redis.asyncio

from .connections import is_cluster

LUA_DIR = resources.files("parley.worker.store") / "lua"
_LIB = (LUA_DIR / "_lib.lua").read_text()

Arg = str | int | float


def _source(name: str, *, sharded: bool) -> str:
    flag = "true" if sharded else "false"
    return f"local SHARDED_PUBSUB = {flag}\n" + _LIB + "\n" + (LUA_DIR / f"{name}.lua").read_text()


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


class LuaScript:
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _source(name, sharded=False)
        self.sha = _sha(self.source)
        self.cluster_source = _source(name, sharded=True)
        self.cluster_sha = _sha(self.cluster_source)

    def variant(self, client: object) -> tuple[str, str]:
        """The source and SHA for ``client``: the cluster variant for a cluster client."""
        if is_cluster(client):
            return self.cluster_source, self.cluster_sha
        return self.source, self.sha

    def __call__(self, client: redis.Redis, keys: list[str], args: list[Arg]) -> Any:
        source, sha = self.variant(client)
        try:
            return client.evalsha(sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return client.eval(source, len(keys), *keys, *args)

    def pipelined(self, client: redis.Redis, calls: list[tuple[list[str], list[Arg]]]) -> list[Any]:
        """Several calls in one round trip (not atomic together); each call's result, in order. On a cluster,
        one round trip per node holding any of the keys."""
        source, _ = self.variant(client)

        def run() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for keys, args in calls:
                self.queue(pipe, client, keys, args)
            return pipe.execute()

        try:
            return run()
        except redis.exceptions.NoScriptError:
            client.script_load(source)  # on a cluster: on every primary
            return run()

    async def run_async(self, client: redis.asyncio.Redis, keys: list[str], args: list[Arg]) -> Any:
        source, sha = self.variant(client)
        try:
            return await client.evalsha(sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await client.eval(source, len(keys), *keys, *args)

    def queue(self, pipe: Any, client: object, keys: list[str], args: list[Arg]) -> None:
        """Queue a call on ``pipe``, a pipeline of ``client``: EVALSHA only, so the caller answers a
        ``NoScriptError`` among the results (with ``run_async``, which sends the source)."""
        _, sha = self.variant(client)
        # execute_command, not evalsha(): redis-py's cluster pipeline refuses the method by name (for no
        # reason that holds for scripts whose keys are declared), not the command.
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)

    def __repr__(self) -> str:
        return f"<LuaScript {self.name} {self.sha[:8]}>"


ENQUEUE = LuaScript("enqueue")
CLAIM = LuaScript("claim")
NEXT_TURN = LuaScript("next_turn")
HEARTBEAT = LuaScript("heartbeat")
RECORD = LuaScript("record")
RECORD_PUBLISH = LuaScript("record_publish")
PUBLISH = LuaScript("publish")
FINISH = LuaScript("finish")
RELEASE = LuaScript("release")
REKICK = LuaScript("rekick")
CANCEL = LuaScript("cancel")
FORGET = LuaScript("forget")
HAND_BACK = LuaScript("hand_back")
REQUEUE = LuaScript("requeue")
DELETE = LuaScript("delete")
UPDATE_CONVERSATION = LuaScript("update_conversation")
WEBHOOK_CLAIM = LuaScript("webhook_claim")
RATE_LIMIT = LuaScript("rate_limit")
CIRCUIT = LuaScript("circuit")
TOOL_RESULTS = LuaScript("tool_results")
PAUSE = LuaScript("pause")
TOOL_OUTPUTS = LuaScript("tool_outputs")
INTERRUPT = LuaScript("interrupt")

ALL = (ENQUEUE, CLAIM, NEXT_TURN, HEARTBEAT, RECORD, RECORD_PUBLISH, PUBLISH, FINISH, RELEASE, REKICK, CANCEL,
       FORGET, HAND_BACK, REQUEUE, DELETE, UPDATE_CONVERSATION, WEBHOOK_CLAIM, RATE_LIMIT, CIRCUIT,
       TOOL_RESULTS, PAUSE, TOOL_OUTPUTS, INTERRUPT)


def flatten(fields: dict[str, Arg | None]) -> list[Arg]:
    """Field/value pairs for HSET, leaving out ``None``."""
    pairs: list[Arg] = []
    for name, value in fields.items():
        if value is not None:
            pairs += [name, value]
    return pairs
