"""``@tool``: a function's JSON Schema from its type hints (pydantic), its description from its docstring."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, create_model

from .context import ToolContext

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    timeout_s: float = DEFAULT_TIMEOUT_S
    arguments_model: type[BaseModel] | None = None
    context_param: str | None = None
    """The parameter that receives the ``ToolContext`` (left out of the schema the model sees)."""

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The model's arguments checked against the type hints (pydantic); raises ``ValidationError``."""
        if self.arguments_model is None:
            return dict(arguments)
        parsed = self.arguments_model.model_validate(arguments)
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def definition(self) -> dict[str, Any]:
        """The function tool as the Responses API takes it in ``tools``."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters, "strict": False}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)


def _arguments(function: Callable[..., Any]) -> tuple[type[BaseModel], str | None]:
    """The pydantic model of a function's arguments, and the name of its ``ToolContext`` parameter."""
    hints = inspect.get_annotations(function, eval_str=True)
    fields: dict[str, Any] = {}
    context_param = None
    for name, param in inspect.signature(function).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {function.__name__}: *args and **kwargs cannot be described to the model")
        annotation = hints.get(name, Any)
        if annotation is ToolContext:
            context_param = name
            continue
        fields[name] = (annotation, ... if param.default is param.empty else param.default)
    model = create_model(f"{function.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return model, context_param


def _parameters(model: type[BaseModel]) -> dict[str, Any]:
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

    def definitions(self, names: bool | list[str] | None = None) -> list[dict[str, Any]]:
        """The tool definitions a turn offers: all (``None`` or ``True``), none (``False``) or those named."""
        return [t.definition() for t in self.offered(names)]

    def offered(self, names: bool | list[str] | None = None) -> list[Tool]:
        if names is None or names is True:
            return list(self.tools.values())
        if names is False:
            return []
        return [self.tools[n] for n in names if n in self.tools]

    def load(self, modules: list[str]) -> None:
        """Import the modules of ``PARLEY_TOOLS``: their ``@tool`` functions register themselves here."""
        for module in modules:
            importlib.import_module(module)


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
        model, context_param = _arguments(fn)
        return registry.add(Tool(name=name or fn.__name__, description=description,
                                 parameters=_parameters(model), function=fn, timeout_s=timeout_s,
                                 arguments_model=model, context_param=context_param))

    return declare(function) if function is not None else declare
