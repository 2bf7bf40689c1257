"""The sample tool the ``demo`` and ``doctor`` commands put in their conversations."""

from __future__ import annotations

from typing import Any

__all__ = ["TOOLS"]

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
