"""Double texting: what a conversation does with the messages a user sends while the bot is still answering.

The decisions are pure functions (``policy``, ``decide``) tested on their own; the mailbox scripts
(worker/store/lua: enqueue.lua, batch() and start_next in _lib.lua, interrupt.lua) apply them atomically, and
``interrupt`` is the worker's part of stopping a running turn."""
