"""Every Redis key parley uses; nothing else spells a key.

One conversation's keys share the hash tag ``{conversation_id}`` so that each Lua script, which only touches
one conversation, runs on Redis Cluster too. The few global keys (indexes) are never touched by a script
together with a conversation's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TENANT = "default"
"""The tenant of plain (legacy) API keys, of an API without keys, and of records from before tenants."""

TOOL_RESULTS_SUFFIX = ":tools"

SEQ_STREAM_SUFFIX = "-0"
"""Stream entry ids are ``<seq>-0`` so an SSE ``Last-Event-ID`` (the seq) maps straight to a stream id."""


def turn_index_ttl_s(retention_s: int) -> int:
    """How long the turn index keeps a nonce: a turn starts within the retention of its acceptance (an older
    record has expired and is skipped), and its record lives the retention past its last write, made while it
    runs; three retentions bounds that with room to spare."""
    return 3 * retention_s


@dataclass(frozen=True)
class Keys:
    prefix: str = "parley"

    def _conv(self, conversation_id: str, name: str) -> str:
        return f"{self.prefix}:{{{conversation_id}}}:{name}"

    def conversation(self, conversation_id: str) -> str:
        """Hash: the conversation record (created_at, metadata, key)."""
        return self._conv(conversation_id, "conv")

    def inbox(self, conversation_id: str) -> str:
        """List of queued turn ids, head first."""
        return self._conv(conversation_id, "inbox")

    def inflight(self, conversation_id: str) -> str:
        """String: the turn id being processed; survives its worker so the next owner resumes it."""
        return self._conv(conversation_id, "inflight")

    def lease(self, conversation_id: str) -> str:
        """String with a PX expiry: the owner's fencing token."""
        return self._conv(conversation_id, "lease")

    def fence(self, conversation_id: str) -> str:
        """Counter that issues fencing tokens; never expires, so tokens only grow."""
        return self._conv(conversation_id, "fence")

    def state(self, conversation_id: str) -> str:
        """Hash: ready (a wake-up is pending), hint_at (ms), last_item_id (upstream checkpoint)."""
        return self._conv(conversation_id, "state")

    def turn_prefix(self, conversation_id: str) -> str:
        return self._conv(conversation_id, "turn:")

    def turn(self, conversation_id: str, turn_id: str) -> str:
        """Hash: one turn's record."""
        return self.turn_prefix(conversation_id) + turn_id

    def turn_index(self, conversation_id: str) -> str:
        """Sorted set: the nonce of each of the conversation's turns (``messages.turn_nonce``) -> when it was
        accepted (ms), so that deleting the conversation finds every turn record (a Lua script cannot SCAN
        on Redis Cluster). The nonce rather than the whole id: a queued turn's bytes are the memory budget."""
        return self._conv(conversation_id, "turn-index")

    def idempotency_prefix(self, conversation_id: str) -> str:
        return self._conv(conversation_id, "idem:")

    def tool_results(self, conversation_id: str, turn_id: str) -> str:
        """Hash: call id -> output of the turn's tool calls (server results and bot outputs), recorded before
        any output goes upstream. Named after the turn's hash (``TOOL_RESULTS_SUFFIX``), so deleting a turn
        can find it."""
        return self.turn(conversation_id, turn_id) + TOOL_RESULTS_SUFFIX

    def idempotency(self, conversation_id: str, idempotency_key: str) -> str:
        return self.idempotency_prefix(conversation_id) + idempotency_key

    def idempotency_index(self, conversation_id: str) -> str:
        """Sorted set: each idempotency key of the conversation -> when it was set (ms), for the delete."""
        return self._conv(conversation_id, "idem-index")

    def seq(self, conversation_id: str) -> str:
        """Counter for event ``seq`` numbers of the conversation."""
        return self._conv(conversation_id, "seq")

    def events(self, conversation_id: str) -> str:
        """Capped stream of the conversation's events (the durable copy) and, by the same name, its pub/sub
        channel (channels and keys are separate namespaces)."""
        return self._conv(conversation_id, "events")

    def deleted(self, conversation_id: str) -> str:
        """Hash: the webhook of a deleted conversation, kept for the retention so that the cancellations its
        deletion caused are still delivered to it."""
        return self._conv(conversation_id, "deleted")

    def outbox(self, conversation_id: str) -> str:
        """List of terminal events not yet copied to the global replies stream."""
        return self._conv(conversation_id, "outbox")

    # --- global indexes ------------------------------------------------------------------------------

    @property
    def active(self) -> str:
        """Sorted set: conversation id -> last enqueue time (ms); what the reaper scans."""
        return f"{self.prefix}:active"

    def conversation_key(self, tenant: str, key: str) -> str:
        """String: conversation id for a tenant's get-or-create key (e.g. a Slack thread). The default
        tenant keeps the layout from before tenants (``conv-key:<key>``), so its keys still find their
        conversations; other tenants' live under ``tenant:<name>:``, which no default key can spell."""
        if tenant == DEFAULT_TENANT:
            return f"{self.prefix}:conv-key:{key}"
        return f"{self.prefix}:tenant:{tenant}:conv-key:{key}"

    def rate_limit(self, key_name: str) -> str:
        """String: an API key's rate limiter (GCRA's theoretical arrival time, us); expires when idle."""
        return f"{self.prefix}:rate:{key_name}"

    @property
    def queued_total(self) -> str:
        """Counter of queued turns across conversations (for the global cap); the reaper re-counts it."""
        return f"{self.prefix}:queued-total"

    @property
    def stats(self) -> str:
        """Hash: the backlog as the reaper last counted it (queued, ready, inflight, active, updated_at)."""
        return f"{self.prefix}:stats"

    @property
    def replies(self) -> str:
        """Stream of every terminal event (turn.completed / turn.failed / turn.cancelled / turn.merged /
        turn.superseded / turn.interrupted), for consumer groups (at-least-once delivery) and the webhook
        dispatcher."""
        return f"{self.prefix}:replies"

    def bridge_turns(self, platform: str) -> str:
        """Stream of the turns a chat platform's bridge accepted (``turn_id``, ``conversation_id``), read by
        its relays in a consumer group: each turn's reply is posted by one relay, and a relay that dies leaves
        its turns to another."""
        return f"{self.prefix}:bridge:{platform}:turns"

    def bridge_posted(self, conversation_id: str, platform: str, turn_id: str) -> str:
        """Hash: what a relay has posted of a turn's reply (message ids, characters sent), so a restarted
        relay continues the same message instead of posting a second one."""
        return self._conv(conversation_id, f"bridge:{platform}:{turn_id}")

    def discord_interaction_token(self, conversation_id: str, turn_id: str) -> str:
        """String with a 900 s expiry: the Discord interaction token a turn's reply is edited with (a
        15-minute credential), kept apart from the turn's record and events so it never leaves Redis."""
        return self._conv(conversation_id, f"bridge:discord:token:{turn_id}")

    # The webhook keys share the hash tag {webhooks}, so moving a delivery between them is one transaction on
    # Redis Cluster too.

    @property
    def webhook_retries(self) -> str:
        """Sorted set: webhook delivery id (the event id) -> when it is next due (s); a dispatcher that takes
        one pushes its score out by a lease, so a dead dispatcher's deliveries come due again."""
        return f"{self.prefix}:{{webhooks}}:retries"

    @property
    def webhook_deliveries(self) -> str:
        """Hash: webhook delivery id -> JSON record (payload, attempts, first attempt, last error) of every
        delivery waiting for a retry or dead-lettered."""
        return f"{self.prefix}:{{webhooks}}:deliveries"

    @property
    def webhook_dead_letters(self) -> str:
        """Sorted set of webhook delivery ids past their retry budget, by time."""
        return f"{self.prefix}:{{webhooks}}:dead-letters"

    # The upstream health keys share the hash tag {upstream}: the circuit script writes a model's hash and the
    # index together.

    def upstream_health(self, model: str) -> str:
        """Hash: one model's circuit (the current window's calls and failures, open_until, opens)."""
        return f"{self.prefix}:{{upstream}}:health:{model}"

    @property
    def upstream_models(self) -> str:
        """Set of models that have a health hash (what the API's /metrics reports)."""
        return f"{self.prefix}:{{upstream}}:models"

    @property
    def dead_letters(self) -> str:
        """Sorted set of ``conversation_id/turn_id`` dead-lettered, by time."""
        return f"{self.prefix}:dead-letters"
