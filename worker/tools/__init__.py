"""Server tools: plain Python functions the worker runs when the model calls them.

This package has the declaration side (``@tool`` and the registry); the tool loop of a turn comes with the
tools issue. Bot code imports the decorator from ``parley``::

    from parley import tool

    @tool(timeout_s=5)
    def weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        \"\"\"The current weather in a city.\"\"\"
"""

from .registry import Tool, ToolRegistry, registry, tool

__all__ = ["Tool", "ToolRegistry", "registry", "tool"]
