"""Server tools: plain Python functions the worker runs when the model calls them.

``registry`` declares them (``@tool``), ``runner`` runs a round's calls, ``loop`` holds the loop's pure
decisions, ``records`` keeps calls and results in Redis (fenced), ``session`` drives one turn's rounds. Bot
code imports the decorator from ``parley``::

    from parley import tool

    @tool(timeout_s=5)
    def weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        \"\"\"The current weather in a city.\"\"\"
"""

from .context import ToolContext
from .registry import Tool, ToolRegistry, registry, tool

__all__ = ["Tool", "ToolContext", "ToolRegistry", "registry", "tool"]
