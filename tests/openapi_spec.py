"""OpenAI's published OpenAPI spec (pinned in ../shared/openai-openapi) as a validator of emulator bodies.

The spec is test data and is never copied into the project; without it, the checks skip with a message.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

# PARLEY_OPENAI_SPEC points elsewhere, e.g. from a git worktree, which has no ../shared beside it.
SPEC_PATH = Path(os.environ.get("PARLEY_OPENAI_SPEC")
                 or Path(__file__).resolve().parents[1].parent / "shared" / "openai-openapi" / "openapi.yaml")

SSE_EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.queued": "ResponseQueuedEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}


@cache
def _components() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"OpenAI spec not found at {SPEC_PATH} (../shared is not beside this checkout)")
    yaml = pytest.importorskip("yaml")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open() as handle:
        spec = yaml.load(handle, Loader=loader)
    return {"components": spec["components"]}


@cache
def _validator(schema_name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    root = dict(_components(), **{"$ref": f"#/components/schemas/{schema_name}"})
    return jsonschema.Draft202012Validator(root)


def validate(schema_name: str, body: Any) -> None:
    """Raise ``AssertionError`` listing every violation of ``schema_name`` in ``body``."""
    errors = sorted(_validator(schema_name).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{schema_name}: " + "; ".join(
        f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message[:200]}" for e in errors[:5])
