"""``python -m parley.worker.events > docs/events.schema.json``: print the events' JSON Schema."""

import json

from .models import json_schema

print(json.dumps(json_schema(), indent=2, sort_keys=True))
