"""The Responses request a turn sends: its options (tools, text format, reasoning, sampling, ...), the
message input with image and file parts, and how a turn's, a conversation's and the server's values combine.

Shared by the API (validation at the door) and the worker (the server's defaults at startup, the body it
sends), so it lives on the worker's side of the layering.
"""

from .inputs import InputMessage, Messages, message_json
from .options import OPTION_FIELDS, RequestDefaults, RequestOptions
from .resolve import WORKER_OWNED, resolve, upstream_body
from .tools import ServerTools

__all__ = ["OPTION_FIELDS", "WORKER_OWNED", "InputMessage", "Messages", "RequestDefaults", "RequestOptions",
           "ServerTools", "message_json", "resolve", "upstream_body"]
