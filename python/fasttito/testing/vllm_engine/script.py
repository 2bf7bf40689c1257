"""The completion script: which assistant message answers a conversation.

``POST /_admin/script`` takes the new script, every key optional (missing keys take defaults)::

    {"mode": "tool_agent",          # "tool_agent" | "text" | "fixed" | "sequence"
     "tool_calls": 3,               # tool_agent: tool-calling turns after the last user message
                                    #   (alias "turns"), then a final text answer
     "parallel": 1,                 # tool_agent: calls per tool-calling turn
     "tool_content": null,          # tool_agent: text before the calls (null: no content)
     "final_content": null,         # tool_agent: final answer
                                    #   (null: "Final answer after N tool calls.")
     "content": null,               # text: the answer (null: "Hello from the test engine.")
     "reasoning": null,             # every mode: reasoning_content of the scripted message
     "message": null,               # fixed: the assistant message, OpenAI shape
     "messages": null,              # sequence: messages[i] answers a conversation with i assistant
                                    #   messages so far (the last one repeats)
     "tools": null,                 # ids-only routes: tools of a conversation the engine has not
                                    #   seen (null: [get_weather])
     "chat_template_kwargs": {},    # ids-only routes: template kwargs for such conversations
     "strict_stability": false}     # 500 "history_unstable" instead of answering an unstable turn

and answers ``{"ok": true, "script": {...}}``; ``GET /_admin/script`` answers the same.

tool_agent: the last message ``user`` or ``tool`` and fewer than ``tool_calls`` tool-calling
assistant turns since the last user message -> a turn calling the first tool of ``tools``
(``get_weather`` without tools); arguments come from its JSON schema and the turn number, ids are
``call`` + 3-digit turn + 2-digit index (9 alphanumerics, as mistral-nemo requires). Otherwise
the final text answer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from fasttito.testing.vllm_engine.errors import bad_request
from fasttito.testing.vllm_engine.messages import normalize_messages, normalize_tools

__all__ = [
    "DEFAULT_TOOL",
    "SCRIPT_MODES",
    "Script",
    "function_of",
    "make_arguments",
    "scripted_assistant",
]

DEFAULT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
CITIES = ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Perth", "Dakar", "Riga")
SCRIPT_MODES = ("tool_agent", "text", "fixed", "sequence")


def function_of(tool: Any) -> dict[str, Any] | None:
    if isinstance(tool, dict):
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return fn
        if isinstance(tool.get("name"), str):  # flat tool shape
            return tool
    return None


def make_arguments(fn: dict[str, Any], i: int) -> dict[str, Any]:
    params = fn.get("parameters")
    params = params if isinstance(params, dict) else {}
    props = params.get("properties")
    props = props if isinstance(props, dict) else {}
    if not props:
        return {}
    args: dict[str, Any] = {}
    for name, schema in props.items():
        schema = schema if isinstance(schema, dict) else {}
        kind = schema.get("type")
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            args[name] = schema["enum"][i % len(schema["enum"])]
        elif kind == "integer":
            args[name] = i
        elif kind == "number":
            args[name] = i + 0.5
        elif kind == "boolean":
            args[name] = i % 2 == 0
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        elif name in ("city", "location"):
            args[name] = CITIES[i % len(CITIES)]
        else:
            args[name] = f"{name}-{i}"
    return args


def scripted_assistant(message: Any, where: str) -> dict[str, Any]:
    """An assistant message given by the test, in render form (arguments parsed to objects)."""
    if not isinstance(message, dict):
        raise bad_request(f"{where} must be an assistant message object")
    msg = normalize_messages([{**message, "role": "assistant"}])[0]
    return {k: v for k, v in msg.items() if v is not None}


@dataclass
class Script:
    mode: str = "tool_agent"
    tool_calls: int = 3
    parallel: int = 1
    tool_content: str | None = None
    final_content: str | None = None
    content: str | None = None
    reasoning: str | None = None
    message: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[Any] | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    strict_stability: bool = False

    @classmethod
    def from_json(cls, body: Any) -> Script:
        if not isinstance(body, dict):
            raise bad_request("script must be a JSON object")
        body = dict(body)
        if "turns" in body and "tool_calls" not in body:
            body["tool_calls"] = body.pop("turns")
        body.pop("turns", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(body) - known)
        if unknown:
            raise bad_request(f"unknown script keys {unknown}; known: {sorted(known)}")
        s = cls(**{k: v for k, v in body.items() if v is not None or k in ("tools",)})
        if s.mode not in SCRIPT_MODES:
            raise bad_request(f"script mode {s.mode!r} unknown; one of {list(SCRIPT_MODES)}")
        for name in ("tool_calls", "parallel"):
            v = getattr(s, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad_request(f"script {name} must be an integer >= 0")
        if s.parallel < 1:
            raise bad_request("script parallel must be >= 1")
        if s.mode == "fixed":
            scripted_assistant(s.message, "script message")
        if s.mode == "sequence":
            if not isinstance(s.messages, list) or not s.messages:
                raise bad_request("script mode 'sequence' needs a non-empty 'messages' list")
            for i, m in enumerate(s.messages):
                scripted_assistant(m, f"script messages[{i}]")
        if s.tools is not None:
            normalize_tools(s.tools)
        if not isinstance(s.chat_template_kwargs, dict):
            raise bad_request("script chat_template_kwargs must be an object")
        return s

    def to_json(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in self.__dataclass_fields__}

    def choose(self, conv: list[dict[str, Any]], tools: list[Any] | None) -> dict[str, Any]:
        n_asst = sum(1 for m in conv if m.get("role") == "assistant")
        if self.mode == "fixed":
            asst = scripted_assistant(self.message, "script message")
        elif self.mode == "sequence":
            assert self.messages is not None
            asst = scripted_assistant(
                self.messages[min(n_asst, len(self.messages) - 1)], "script messages[i]"
            )
        elif self.mode == "text":
            asst = {"role": "assistant", "content": self.content or "Hello from the test engine."}
        else:
            asst = self._tool_agent(conv, tools, n_asst)
        if self.reasoning is not None and "reasoning_content" not in asst:
            asst["reasoning_content"] = self.reasoning
        return asst

    def _tool_agent(
        self, conv: list[dict[str, Any]], tools: list[Any] | None, n_asst: int
    ) -> dict[str, Any]:
        last = conv[-1].get("role") if conv else None
        last_user = max((i for i, m in enumerate(conv) if m.get("role") == "user"), default=-1)
        calls_done = sum(
            1 for m in conv[last_user + 1 :] if m.get("role") == "assistant" and m.get("tool_calls")
        )
        if last in ("user", "tool") and calls_done < self.tool_calls:
            fn = next((f for f in map(function_of, tools or []) if f is not None), None)
            fn = fn or DEFAULT_TOOL["function"]
            calls = [
                {
                    "id": f"call{n_asst % 1000:03d}{k % 100:02d}",
                    "type": "function",
                    "function": {
                        "name": fn["name"],
                        "arguments": make_arguments(fn, n_asst * self.parallel + k),
                    },
                }
                for k in range(self.parallel)
            ]
            asst: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
            if self.tool_content is not None:
                asst["content"] = self.tool_content
            return asst
        total = sum(len(m.get("tool_calls") or []) for m in conv if m.get("role") == "assistant")
        content = self.final_content or f"Final answer after {total} tool calls."
        return {"role": "assistant", "content": content}
