"""Fault injection: deterministic with a seed, set per server and per request.

Per request, a fault is asked for with the header ``x-emulator-fault`` or the request metadata key
``emulator_fault`` (so a parley turn's metadata reaches it end to end). The value is one or more
``;``-separated parts: a fault kind (``429``, ``500``, ``503``, ``drop``, ``hang``, ``fail``, ``bad_request``)
and options ``latency=MS``, ``ttft=MS``, ``times=N`` (only the first N requests with the same fault key get
the fault; the key is the header ``x-emulator-fault-key`` or metadata ``emulator_fault_key``, else the
conversation and the spec).
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field

from .store import ApiError, RequestRecord

FAULT_KINDS = ("429", "500", "503", "drop", "hang", "fail", "bad_request")


@dataclass
class EmulatorConfig:
    seed: int = 0
    latency_ms: tuple[int, int] = (0, 0)
    """Time from request to the final event, drawn uniformly from this range."""
    ttft_ms: int | None = None
    """Time to the first delta; default: the whole latency is spent before the first delta."""
    delta_interval_ms: int = 0
    chunk_chars: int = 12
    reply_words: int = 20
    p_429: float = 0.0
    p_500: float = 0.0
    p_503: float = 0.0
    p_drop: float = 0.0
    p_hang: float = 0.0
    p_fail: float = 0.0
    retry_after_s: float = 1.0
    hang_s: float = 3600.0
    reject_empty_input: bool = False
    """UNKNOWN upstream behaviour (openai-api.md §5): by default, a conversation-bound request without input
    is accepted, as the schema allows; this switch makes it a 400 on ``input`` instead."""
    api_keys: tuple[str, ...] = ()
    """Bearer keys the emulator accepts; empty accepts any. Others get OpenAI's 401 ``invalid_api_key``."""
    echo_rejected_key: bool = False
    """The 401 repeats the rejected key in full and the Authorization header as sent, as some proxies and
    providers do, instead of OpenAI's masked ``sk-ab***wxyz``: what parley must never store or log."""
    drop_completes: bool = True
    """UNKNOWN upstream behaviour: whether a response finishes server-side after the client's stream drops.
    By default it does (the harder case for exactly-once), and its items are appended."""
    drop_stores_calls: bool = False
    """UNKNOWN upstream, reported in openai-python#3561: a stream that drops (the fault, or a client closing
    it) while function calls stream. By default that response never completes and nothing of it is stored (an
    output for its calls gets "No tool call found"); True: it completes like a text reply under
    ``drop_completes`` and its calls are stored."""
    close_stops_text: bool = False
    """UNCONFIRMED upstream (tools-and-platforms.md §5): a client that closes a plain text stream. By default
    the reply goes on and completes server-side, its items appended (the harder case for an interrupt);
    True: the generation ends there and nothing is stored, as a community report says OpenAI does."""


@dataclass(frozen=True)
class Fault:
    kind: str | None = None
    latency_ms: int = 0
    ttft_ms: int | None = None


@dataclass
class FaultPlanner:
    config: EmulatorConfig
    _rng: random.Random = field(init=False)
    _counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)
            self._counts.clear()

    def decide(self, spec: str | None, key: str, *, allow_stream_faults: bool) -> Fault:
        with self._lock:
            lo, hi = self.config.latency_ms
            latency = self._rng.randint(lo, hi) if hi > lo else lo
            kind = self._random_kind(allow_stream_faults)
            ttft = self.config.ttft_ms
            if spec:
                kind_asked, latency_asked, ttft_asked, times = parse_spec(spec)
                if latency_asked is not None:
                    latency = latency_asked
                ttft = ttft_asked if ttft_asked is not None else ttft
                if kind_asked and self._take(f"{key}|{spec}", times):
                    kind = kind_asked
            return Fault(kind=kind, latency_ms=latency, ttft_ms=ttft)

    def _random_kind(self, allow_stream_faults: bool) -> str | None:
        c = self.config
        roll = self._rng.random()
        for kind, p in (("429", c.p_429), ("500", c.p_500), ("503", c.p_503), ("hang", c.p_hang),
                        ("fail", c.p_fail), ("drop", c.p_drop if allow_stream_faults else 0.0)):
            if roll < p:
                return kind
            roll -= p
        return None

    def _take(self, key: str, times: int | None) -> bool:
        if times is None:
            return True
        used = self._counts.get(key, 0)
        if used >= times:
            return False
        self._counts[key] = used + 1
        return True


def parse_spec(spec: str) -> tuple[str | None, int | None, int | None, int | None]:
    """``"429;times=2;latency=50"`` -> (kind, latency_ms, ttft_ms, times). Unknown parts raise ValueError."""
    kind: str | None = None
    latency = ttft = times = None
    for raw in spec.split(";"):
        part = raw.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        if not value and name in FAULT_KINDS:
            kind = name
        elif name == "latency":
            latency = int(value)
        elif name == "ttft":
            ttft = int(value)
        elif name == "times":
            times = int(value)
        else:
            raise ValueError(f"unknown fault part {part!r}")
    return kind, latency, ttft, times


async def inject_http_fault(kind: str | None, record: RequestRecord, config: EmulatorConfig) -> None:
    """The faults that answer before any generation: an HTTP error, or a hang before one."""
    if kind in ("429", "500", "503", "bad_request", "hang"):
        record.status = f"fault:{kind}"
    if kind == "hang":
        await asyncio.sleep(config.hang_s)
    if kind == "429":
        raise ApiError(429, "Rate limit reached for requests. Please try again later.",
                       type_="requests", code="rate_limit_exceeded",
                       headers={"retry-after": f"{config.retry_after_s:g}"})
    if kind in ("500", "503"):
        raise ApiError(int(kind), "The server had an error while processing your request. "
                                  "Sorry about that!", type_="server_error", code="server_error")
    if kind == "bad_request":
        raise ApiError(400, "Invalid request (injected by the emulator).", param="input",
                       code="invalid_value")
