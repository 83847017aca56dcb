"""The Discord bridge: ``POST /discord/interactions`` (Ed25519-verified slash commands), the reply relay
(``parley discord-relay``), the gateway bot (``parley discord-bot``), and the pure rendering of replies."""
