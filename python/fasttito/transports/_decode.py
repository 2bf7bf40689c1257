"""Completion decoding for engines that return ids only (vLLM generate; Dynamo 1.6.1, whose
frontend returns the raw text and runs no tool parser on token-in requests): ids -> content,
reasoning, tool calls and the assistant message the chat template renders back to those ids.

This is the one place the transports call; the work is Rust (``_core.decode_completion``, per
model family: Hermes, Qwen3-Coder, Llama-3, Mistral, gpt-oss, DeepSeek, ``<think>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fasttito import _core

__all__ = ["Decoded", "decode_completion"]


@dataclass(slots=True)
class Decoded:
    content: str | None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    unparsed_tool_calls: int = 0
    finish_reason_hint: str | None = None
    message: dict[str, Any] | None = None


def decode_completion(tokenizer: _core.Tokenizer, ids: Sequence[int]) -> Decoded:
    """Decode a completion's ids (the final stop id, if any, is not part of the message)."""
    out = _core.decode_completion(tokenizer, ids)
    return Decoded(
        content=out.get("content"),
        reasoning_content=out.get("reasoning_content"),
        tool_calls=list(out.get("tool_calls") or []),
        unparsed_tool_calls=int(out.get("unparsed_tool_calls") or 0),
        finish_reason_hint=out.get("finish_reason_hint"),
        message=out.get("message"),
    )
