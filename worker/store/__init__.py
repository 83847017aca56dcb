"""The Redis protocol: every key (``keys``), the Lua scripts that change them atomically (``lua/``,
``scripts``), and their typed callers: the ingress side (``ingress``, async, for the API) and the worker side
(``mailbox``, ``lease``, ``deferred``), plus dead letters and the connection pools."""
