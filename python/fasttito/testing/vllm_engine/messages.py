"""Request messages normalized as vLLM does before rendering.

Tool-call ``arguments`` JSON strings are parsed into dicts (``""``/``None`` -> ``{}``), a list
``content`` of text parts is joined with ``"\\n"`` (other parts are a 400), ``reasoning`` is copied
to ``reasoning_content``. ``tools`` are passed to the template as received.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from fasttito.testing.vllm_engine.errors import bad_request

__all__ = ["normalize_messages", "normalize_tools"]

TEXT_PART_TYPES = ("text", "input_text", "output_text")


def _parse_arguments(args: Any, where: str) -> Any:
    if args is None or args == "":
        return {}
    if isinstance(args, str):
        try:
            return json.loads(args)
        except json.JSONDecodeError as exc:
            raise bad_request(f"{where}.function.arguments is not valid JSON: {exc}") from exc
    return copy.deepcopy(args)


def normalize_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list of message objects")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad_request(f"{where} must be an object with a string 'role'")
        msg = copy.deepcopy(m)
        content = msg.get("content")
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if isinstance(part, str):
                    texts.append(part)
                elif isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES:
                    texts.append(str(part.get("text", "")))
                else:
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise bad_request(
                        f"{where}.content[{j}] of type {kind!r}: the test engine supports text "
                        "content only (vLLM's multimodal processor is not emulated)"
                    )
            msg["content"] = "\n".join(texts)
        elif content is not None and not isinstance(content, str):
            raise bad_request(f"{where}.content must be a string, a list of parts or null")
        if msg["role"] == "assistant" and isinstance(msg.get("tool_calls"), list):
            calls = []
            for j, tc in enumerate(msg["tool_calls"]):
                if not isinstance(tc, dict) or not isinstance(tc.get("function"), dict):
                    raise bad_request(f"{where}.tool_calls[{j}] must have a 'function' object")
                fn = tc["function"]
                fn["arguments"] = _parse_arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]")
                calls.append(tc)
            msg["tool_calls"] = calls
        if msg.get("reasoning") is not None and msg.get("reasoning_content") is None:
            msg["reasoning_content"] = msg["reasoning"]
        out.append(msg)
    return out


def normalize_tools(tools: Any) -> list[Any] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise bad_request("'tools' must be a list or null")
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise bad_request(f"tools[{i}] must be an object")
    return copy.deepcopy(tools)
