"""Double texting (issue 13): what a conversation does with the messages a user sends while the bot is still
answering. This package holds the decisions, as pure functions tested on their own; the mailbox scripts and
the drain carry them out (not wired yet)."""
