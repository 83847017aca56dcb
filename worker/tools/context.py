"""What a server tool may ask for about the call it answers: declare a parameter of type ``ToolContext``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ToolContext:
    turn_id: str
    conversation_id: str
    call_id: str
    metadata: dict[str, str] = field(default_factory=dict)
    """The turn's metadata (a Slack channel, a user id)."""

    @property
    def idempotency_key(self) -> str:
        """The same for every run of this call, across retries and crashes: a tool whose result was not
        recorded before its worker died runs again, so its side effects should be keyed by this."""
        return f"{self.turn_id}:{self.call_id}"
