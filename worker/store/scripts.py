"""The Lua scripts in ``worker/store/lua/``, loaded once, run by SHA with a fallback to EVAL after a server
restart."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import redis
import redis.asyncio

LUA_DIR = resources.files("parley.worker.store") / "lua"
_LIB = (LUA_DIR / "_lib.lua").read_text()

Arg = str | int | float


class LuaScript:
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _LIB + "\n" + (LUA_DIR / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: list[str], args: list[Arg]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)

    def pipelined(self, client: redis.Redis, calls: list[tuple[list[str], list[Arg]]]) -> list[Any]:
        """Several calls in one round trip (not atomic together); each call's result, in order."""

        def run() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            return pipe.execute()

        try:
            return run()
        except redis.exceptions.NoScriptError:
            client.script_load(self.source)
            return run()

    async def run_async(self, client: redis.asyncio.Redis, keys: list[str], args: list[Arg]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    def __repr__(self) -> str:
        return f"<LuaScript {self.name} {self.sha[:8]}>"


ENQUEUE = LuaScript("enqueue")
CLAIM = LuaScript("claim")
NEXT_TURN = LuaScript("next_turn")
HEARTBEAT = LuaScript("heartbeat")
RECORD = LuaScript("record")
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

ALL = (ENQUEUE, CLAIM, NEXT_TURN, HEARTBEAT, RECORD, PUBLISH, FINISH, RELEASE, REKICK, CANCEL, FORGET,
       HAND_BACK, REQUEUE, DELETE, UPDATE_CONVERSATION, WEBHOOK_CLAIM, RATE_LIMIT, CIRCUIT, TOOL_RESULTS,
       PAUSE, TOOL_OUTPUTS)


def flatten(fields: dict[str, Arg | None]) -> list[Arg]:
    """Field/value pairs for HSET, leaving out ``None``."""
    pairs: list[Arg] = []
    for name, value in fields.items():
        if value is not None:
            pairs += [name, value]
    return pairs
