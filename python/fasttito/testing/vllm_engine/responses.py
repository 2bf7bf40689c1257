"""Pieces of the vLLM engine's answers: logprob entries (chat's labelled ones, vLLM 0.32's
tokens mode) and the response message of a chat completion."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fasttito.testing.vllm_engine.completion import fake_logprob
from fasttito.testing.vllm_engine.model import Model

__all__ = ["logprob_entries", "response_message", "token_entries"]


def logprob_entries(
    model: Model, ids: list[int], start: int, top_n: int, as_ids: bool
) -> list[dict[str, Any]]:
    out = []
    for i, t in enumerate(ids):
        lp = fake_logprob(t, start + i)
        tok = f"token_id:{t}" if as_ids else model.token_text(t)
        tops = []
        for j in range(top_n):
            alt = t if j == 0 else (t + 7919 * j) % model.vocab_size
            alt_tok = f"token_id:{alt}" if as_ids else model.token_text(alt)
            tops.append(
                {
                    "token": alt_tok,
                    "logprob": lp if j == 0 else round(lp - 0.75 * j - 0.1, 6),
                    "bytes": list(alt_tok.encode("utf-8", errors="replace")),
                }
            )
        out.append(
            {
                "token": tok,
                "logprob": lp,
                "bytes": list(tok.encode("utf-8", errors="replace")),
                "top_logprobs": tops,
            }
        )
    return out


def token_entries(model: Model, ids: list[int], start: int, top_n: int) -> list[dict[str, Any]]:
    """vLLM 0.32's tokens-mode entries: ``token_id`` and ``rank`` instead of a label; the
    sampled token leads ``top_logprobs`` (vLLM lists max(1, n) alternatives)."""
    out = []
    for i, t in enumerate(ids):
        lp = fake_logprob(t, start + i)
        tops = []
        for j in range(max(1, top_n)):
            alt = t if j == 0 else (t + 7919 * j) % model.vocab_size
            alp = lp if j == 0 else round(lp - 0.75 * j - 0.1, 6)
            tops.append({"token_id": alt, "logprob": alp, "rank": j + 1})
        out.append({"token_id": t, "logprob": lp, "rank": 1, "top_logprobs": tops})
    return out


def response_message(
    model: Model, asst: dict[str, Any], ids: list[int], complete: bool
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": None,
        "audio": None,
        "function_call": None,
        "tool_calls": [],
        "reasoning": None,
        "reasoning_content": None,
    }
    if not complete:
        msg["content"] = model.decode(ids, skip_special_tokens=True)
        return msg
    content = asst.get("content")
    msg["content"] = content if isinstance(content, str) and content != "" else None
    if not asst.get("tool_calls") and msg["content"] is None:
        msg["content"] = ""
    reasoning = asst.get("reasoning_content")
    msg["reasoning"] = msg["reasoning_content"] = reasoning
    for tc in asst.get("tool_calls") or []:
        fn = tc["function"]
        args = fn.get("arguments", {})
        msg["tool_calls"].append(
            {
                "id": tc.get("id") or f"chatcmpl-tool-{uuid.uuid4().hex[:16]}",
                "type": "function",
                "function": {
                    "name": fn["name"],
                    "arguments": args
                    if isinstance(args, str)
                    else json.dumps(args, ensure_ascii=False),
                },
            }
        )
    return msg
