"""The one settings object shared by the API, the workers and the CLI (env prefix ``PARLEY_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .secret_url import SecretUrl

if TYPE_CHECKING:
    from .texting.policy import TextingPolicy
from .secrets_policy import check_secret_strength


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error would otherwise print the raw input, secrets and all.
    model_config = SettingsConfigDict(
        env_prefix="PARLEY_", env_file=".env", env_ignore_empty=True, extra="ignore",
        hide_input_in_errors=True,
    )

    environment: Literal["development", "production"] = "development"

    # --- Redis ---------------------------------------------------------------------------------------
    redis_url: SecretUrl | None = None
    """Redis for mailboxes, events and (unless ``broker_url`` is set) the Celery broker. Unset: ``parley up``
    starts an embedded one. Shown with its password masked; ``redis_url_required`` is the plain URL, for
    connecting."""
    broker_url: SecretStr | None = None
    """The Celery broker that carries the wake-ups (``amqp://`` RabbitMQ or another ``redis://``); unset: the
    Redis of ``redis_url``."""
    redis_cluster: bool = False
    """``redis_url`` names a node of a Redis Cluster: state is spread over its shards (the README's Redis
    Cluster section); ``broker_url`` must then be set, as Celery cannot use a cluster."""
    key_prefix: str = "parley"
    redis_max_connections: int = 256
    """Pool size per process; keep it above the worker concurrency (redis-py fails hard past it)."""

    # --- Upstream (OpenAI) ---------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PARLEY_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = None
    """Unset with a key: api.openai.com. Unset without a key: ``parley up`` starts the local emulator."""
    model: str = "gpt-5.4-mini"
    instructions: str | None = None
    default_request: dict[str, Any] = {}
    """A JSON object of Responses options (``tools``, ``text``, ``reasoning``, ``temperature``, ...) every
    turn gets unless it or its conversation's defaults set the field; checked at startup like a turn's."""
    stream_upstream: bool = True
    """Stream generations (deltas for users, the response id known at once); off: one plain call per attempt,
    about half the client CPU, no ``response.delta`` events."""
    openai_timeout_s: float = 120.0
    openai_connect_timeout_s: float = 5.0

    # --- Tools (worker/tools/) ------------------------------------------------------------------------
    tools: Annotated[list[str], NoDecode] = []
    """Comma-separated import paths of modules whose ``@tool`` functions the workers run (server tools)."""
    max_tool_rounds: int = 10
    """Follow-up requests with tool outputs one turn may make; past it the turn fails
    ``tool_rounds_exceeded``."""
    tool_output_timeout_s: float = 600.0
    """How long a turn waits for its bot's tool outputs before it fails ``tool_outputs_timeout``."""

    # --- Double texting (worker/texting/) -----------------------------------------------------------
    double_texting: Literal["enqueue", "merge", "latest", "interrupt", "reject"] = "enqueue"
    """What a message does while its conversation is busy, unless the turn or its conversation says (README,
    Double texting)."""
    debounce_ms: int = Field(default=0, ge=0, le=600_000)
    """A turn starts only after this long without a new message in its conversation (0: at once)."""
    debounce_max_ms: int | None = Field(default=None, ge=0, le=600_000)  # the wait's cap from the first one

    # --- Ordering and recovery -----------------------------------------------------------------------
    lease_ttl_ms: int = 15_000
    """A dead worker's conversation is resumed after at most this plus ``reaper_interval_s``."""
    heartbeat_interval_ms: int = 5_000
    reaper_interval_s: float = 5.0
    hint_retry_s: float = 30.0
    """A ready conversation whose wake-up has not run for this long gets a new one from the reaper."""
    turn_deadline_s: float = 900.0
    """Retryable upstream errors (429, 5xx, timeouts, dropped streams) are retried until this long after the
    turn first started (a turn may ask for less with ``deadline_s``), then it fails ``deadline_exceeded``."""
    max_crashes: int = 3
    """A turn whose worker died while running it more than this many times is dead-lettered (a poison
    turn)."""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    circuit_breaker: bool = True
    """Workers share each model's upstream health in Redis: when most calls fail, all of them wait together
    (the circuit is open) instead of each hammering the provider, then let a few calls probe it."""
    circuit_window_s: float = 10.0
    circuit_min_calls: int = 20
    """Calls a window needs before its failure ratio can open the circuit."""
    circuit_failure_ratio: float = 0.5
    circuit_cooldown_s: float = 2.0
    """How long the circuit stays open the first time; doubled each time it opens again, up to the max."""
    circuit_cooldown_max_s: float = 30.0
    fairness_budget: int = 10
    """Turns one drain task runs before it yields the worker to other conversations."""
    mailbox_cap: int = 100
    global_queue_cap: int = 100_000
    """Queued turns across all conversations before the ingress answers 429."""
    shutdown_grace_s: float = 20.0
    """On SIGTERM, running turns get this long to finish before they are handed back."""
    faultpoint: str | None = None
    """Tests only: the worker SIGKILLs itself at this point (see worker/run/faultpoints.py)."""

    # --- Events and retention ------------------------------------------------------------------------
    stream_maxlen: int = 1_000
    replies_maxlen: int = 100_000
    """Approximate length cap of the global replies stream; a consumer group lagging further loses entries."""
    delta_interval_ms: int = 50
    """Streamed deltas of one turn are joined into at most one ``response.delta`` event per interval."""
    retention_s: int = 7 * 24 * 3600
    idempotency_ttl_s: int = 24 * 3600

    # --- Worker --------------------------------------------------------------------------------------
    worker_pool: Literal["threads", "prefork", "gevent", "solo"] = "threads"
    worker_concurrency: int = 200
    worker_nice: int = Field(default=0, ge=0, le=19)
    """Niceness a worker process takes at start; on a host it shares with the API (``parley up``, one VM), 10
    lets requests get a CPU first while workers still use every idle one (bench/busy_ingress.py)."""

    worker_metrics_port: int = 9808
    """Port of a worker process's Prometheus endpoint; 0 turns it off."""
    worker_metrics_address: str = "127.0.0.1"
    """Address it binds: loopback unless set (deploy/ sets 0.0.0.0 where Prometheus scrapes pod IPs)."""
    worker_send_task_events: bool = False
    """Celery task events, which Flower needs to show tasks; they cost throughput (research.md §4a)."""

    # --- Webhooks (worker/webhooks/, ``parley webhooks run``) ------------------------------------------
    webhook_url: str | None = None
    """Default webhook of conversations that name none of their own; unset: only those that do get one."""
    webhook_events: Annotated[list[str], NoDecode] = ["turn.completed", "turn.failed", "turn.cancelled",
                                                      "turn.merged", "turn.superseded", "turn.interrupted"]
    """Comma-separated event types the default webhook gets (terminal ones only)."""
    webhook_secret: SecretStr | None = None
    """``whsec_<base64>``: the Standard Webhooks signing key; the dispatcher refuses to start without it."""
    webhook_timeout_s: float = 10.0
    """One POST's whole budget; a receiver that hangs costs its own deliveries this long, nobody else's."""
    webhook_retry_for_s: float = 6 * 3600.0
    """A delivery still failing this long after its first attempt is dead-lettered."""
    webhook_backoff_base_s: float = 1.0
    webhook_backoff_max_s: float = 600.0
    webhook_concurrency: int = 100
    """POSTs in flight per dispatcher process."""
    webhook_per_url_concurrency: int = 8
    """POSTs in flight to one URL; more for that URL wait in the retry set, so a slow receiver stalls only
    its own deliveries."""
    webhook_claim_idle_ms: int = 60_000
    """A delivery taken by a dispatcher that died is taken over after this long (above twice the timeout)."""
    webhook_metrics_port: int = 9809
    """Port of the dispatcher's Prometheus endpoint; 0 turns it off."""
    webhook_metrics_address: str = "127.0.0.1"
    """Address it binds, loopback unless set."""

    # --- Chat platform bridges (api/bridges/; the README's Settings table says what each one does) -------
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    """Set: the API serves ``POST /slack/events``, every request checked against it (Bolt)."""
    slack_app_token: SecretStr | None = None  # ``xapp-...``, connections:write: ``parley slack-socket``
    slack_api_url: str | None = None
    slack_streaming: bool = True
    slack_tenant: str = "slack"
    """The tenant the Slack bridge's conversations belong to: API keys of other tenants do not see them."""
    discord_public_key: str | None = None
    """The Discord application's public key (hex). Set: the API serves ``POST /discord/interactions``."""
    discord_application_id: str | None = None
    discord_bot_token: SecretStr | None = None
    discord_api_url: str | None = None
    discord_command: str = "ask"
    discord_tenant: str = "discord"

    # --- Flower --------------------------------------------------------------------------------------
    flower_basic_auth: SecretStr | None = None  # ``user:password[,user2:password2]`` for Flower's UI and API
    flower_allow_unauthenticated: bool = False
    """Without basic auth, ``parley flower`` refuses to start unless this is set."""
    flower_address: str = "127.0.0.1"
    flower_port: int = 5555

    # --- API -----------------------------------------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = []
    """Comma-separated API keys: ``name:tenant:scope+scope:sha256hex`` entries (``parley keys new`` makes
    one), or plain secrets (tenant ``default``, every scope). None here nor in the file: no auth, and the API
    only binds to loopback."""
    api_keys_file: str | None = None
    """A file of key entries, one per line (``#`` comments), re-read within a second of any change: keys are
    added and revoked without a restart. A file that turns invalid keeps the keys last read (logged)."""
    rate_limit_per_s: float = 0.0
    """Requests per second one API key may make, across all API processes (in Redis); 0 turns it off."""
    rate_limit_burst: int = 50
    """Requests a key may make at once above its steady rate before it gets 429 ``rate_limited``."""
    host: str = "127.0.0.1"
    port: int = 8000
    max_input_chars: int = 32_000
    max_body_bytes: int = 256 * 1024
    header_timeout_s: float = 10.0
    """A connection whose request headers are not complete this long after it opened (or after the request's
    first byte) is closed: slow-header clients would otherwise hold connections forever."""
    body_timeout_s: float = 30.0
    """A request body must arrive within this long of the first read, else 408 ``body_timeout``."""
    max_connections: int = 12_000
    """Connections (and requests in flight) one ``parley api`` process holds at once (uvicorn's
    ``limit_concurrency``); past it new requests get 503 at once, so a flood of idle or slow connections
    cannot exhaust the process's file descriptors and memory. Keep it above ``max_listeners``."""
    max_listeners: int = 10_000
    """Event streams and long-polls one API process serves at once; beyond, 503 ``too_many_listeners``. They
    share one Redis connection (the process's fan-out hub), so this caps memory (a connection, a task and a
    bounded event queue each), not Redis clients."""

    # --- Local runs (parley up) --------------------------------------------------------------------------
    data_dir: str = ".parley"
    """Where ``parley up`` keeps its Redis data (append-only file), logs, beat schedule and ``up.json``, which
    tells ``parley send``, ``chat`` and ``dead-letter`` beside it where its API and Redis are."""

    # --- Logs ----------------------------------------------------------------------------------------
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: str = "INFO"

    @field_validator("api_keys", "webhook_events", "tools", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("default_request", mode="after")
    @classmethod
    def _check_default_request(cls, value: dict[str, Any]) -> dict[str, Any]:
        from pydantic import ValidationError

        from .request import RequestOptions

        try:
            return RequestOptions.model_validate(value).options()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"PARLEY_DEFAULT_REQUEST {where}: {first['msg']}") from None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.redis_cluster and self.broker_url is None:
            raise ValueError("PARLEY_REDIS_CLUSTER needs PARLEY_BROKER_URL: Celery cannot use a Redis "
                             "Cluster as its broker")
        if self.heartbeat_interval_ms * 2 > self.lease_ttl_ms:
            raise ValueError("heartbeat_interval_ms must be at most half of lease_ttl_ms")
        from .webhooks.policy import check_webhook_events, check_webhook_url

        if self.webhook_url is not None:
            check_webhook_url(self.webhook_url)
        check_webhook_events(self.webhook_events)
        if self.webhook_claim_idle_ms <= 2 * self.webhook_timeout_s * 1000:
            # An entry may wait one timeout for its URL's slot and take another to POST while still alive.
            raise ValueError("webhook_claim_idle_ms must be above twice webhook_timeout_s")
        if self.environment == "production":
            self._check_secrets()
        return self

    def _check_secrets(self) -> None:
        """No placeholder (deploy/'s Secret, .env.example, the README) and no short API key in production."""
        for number, key in enumerate(self.api_keys, start=1):
            what = f"PARLEY_API_KEYS entry {number}" if len(self.api_keys) > 1 else "PARLEY_API_KEYS"
            check_secret_strength(key.get_secret_value(), what=what)
        others = {"PARLEY_WEBHOOK_SECRET": self.webhook_secret, "OPENAI_API_KEY": self.openai_api_key}
        for what, secret in others.items():
            if secret is not None:
                check_secret_strength(secret.get_secret_value(), what=what, min_length=0)
        if self.flower_basic_auth is not None:
            for entry in self.flower_basic_auth.get_secret_value().split(","):
                user, _, password = entry.strip().partition(":")
                check_secret_strength(password, what=f"the password of {user!r} in PARLEY_FLOWER_BASIC_AUTH",
                                      min_length=0)

    @property
    def redis_url_required(self) -> str:
        if not self.redis_url:
            raise RuntimeError("PARLEY_REDIS_URL is not set (parley up starts an embedded Redis for you)")
        return self.redis_url.get_secret_value()

    @property
    def texting_policy(self) -> TextingPolicy:
        """The server's layer of every turn's double-texting policy."""
        from .texting.policy import TextingPolicy

        return TextingPolicy(self.double_texting, self.debounce_ms, self.debounce_max_ms)

    @property
    def json_logs(self) -> bool:
        if self.log_format == "auto":
            return self.environment == "production"
        return self.log_format == "json"


@lru_cache
def get_settings() -> Settings:
    return Settings()
