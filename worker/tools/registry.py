"""``@tool``: a function's JSON Schema from its type hints (pydantic), its description from its docstring."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import ConfigDict, create_model

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def definition(self) -> dict[str, Any]:
        """The function tool as the Responses API takes it in ``tools``."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters, "strict": False}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)


def _parameters(function: Callable[..., Any]) -> dict[str, Any]:
    hints = inspect.get_annotations(function, eval_str=True)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(function).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {function.__name__}: *args and **kwargs cannot be described to the model")
        annotation = hints.get(name, Any)
        fields[name] = (annotation, ... if param.default is param.empty else param.default)
    model = create_model(f"{function.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def add(self, new: Tool) -> Tool:
        existing = self.tools.get(new.name)
        if existing is not None and existing.function is not new.function:
            raise ValueError(f"two server tools are named {new.name!r}")
        self.tools[new.name] = new
        return new

    def definitions(self) -> list[dict[str, Any]]:
        return [t.definition() for t in self.tools.values()]


registry = ToolRegistry()
"""The process's tools: those of the modules listed in ``PARLEY_TOOLS``, registered as they are imported."""


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...
@overload
def tool(*, name: str | None = None,
         timeout_s: float = DEFAULT_TIMEOUT_S) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(function: Callable[..., Any] | None = None, /, *, name: str | None = None,
         timeout_s: float = DEFAULT_TIMEOUT_S) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Declare a server tool: ``@tool`` or ``@tool(name=..., timeout_s=...)``."""

    def declare(fn: Callable[..., Any]) -> Tool:
        description = inspect.cleandoc(fn.__doc__ or "").strip()
        return registry.add(Tool(name=name or fn.__name__, description=description,
                                 parameters=_parameters(fn), function=fn, timeout_s=timeout_s))

    return declare(function) if function is not None else declare
