"""The vLLM engine's faults (``engine.faults(...)``, ``POST /_admin/faults``).

The queue, the random draw and the wire faults (``http_500`` ... ``http_504``, ``status``,
``delay``, ``stall``, ``reset``, ``drop``, ``truncated_json``, ``malformed_json``) are the
shared ones of ``fasttito.testing.engine_core.faults``; here a status fault may also carry
``"body": "text"`` (sent as text/plain instead of vLLM's error JSON). ``path`` restricts a fault
to one route; without it, the body faults below apply to the three completion routes
(``COMPLETION_PATHS``) and the others to any non-admin route. The body faults:

* ``missing_token_ids``: ``choices[0].token_ids`` key removed
* ``missing_prompt_token_ids``: top-level ``prompt_token_ids`` removed
* ``short_logprobs``: ``logprobs.content`` one entry shorter than ``token_ids``
* ``long_logprobs``: ``logprobs.content`` one entry longer than ``token_ids``
* ``null_logprob``: one ``logprob`` is ``null``
* ``oov_token_id``: ``token_ids[0]`` = vocab size + 12345
* ``no_stop_token``: the final stop token (and its logprob) removed, finish_reason unchanged
"""

from __future__ import annotations

from typing import Any

from fasttito.testing.engine_core import faults as core
from fasttito.testing.engine_core.faults import FaultBook, FaultError
from fasttito.testing.vllm_engine.model import Model

__all__ = [
    "BODY_FAULTS",
    "COMPLETION_PATHS",
    "FAULT_MODES",
    "fault_book",
    "mutate_body",
    "parse_fault",
    "parse_random",
]

#: Faults that rewrite a finished completion body.
BODY_FAULTS = (
    "missing_token_ids",
    "missing_prompt_token_ids",
    "short_logprobs",
    "long_logprobs",
    "null_logprob",
    "oov_token_id",
    "no_stop_token",
)
FAULT_MODES = tuple(core.STATUS_FAULTS) + core.WIRE_FAULTS + BODY_FAULTS
COMPLETION_PATHS = ("/v1/chat/completions", "/v1/chat/completions/tokens", "/inference/v1/generate")
#: What a ``malformed_json`` fault sends.
MALFORMED_BODY = b'{"id": "broken", "choices": [{"index": 0,, "token_ids": [1 2 3]}'


def parse_fault(obj: Any) -> dict[str, Any]:
    """One fault request in its queued form (``engine_core.faults.parse_fault`` + body)."""
    fault = core.parse_fault(obj, FAULT_MODES)
    if "status" in fault:
        if obj.get("body") is not None and not isinstance(obj["body"], str):
            raise FaultError("fault body must be a string")
        fault["body"] = obj.get("body")
    return fault


def parse_random(obj: Any) -> dict[str, Any] | None:
    """The ``random`` fault setting with this engine's modes, or None (off)."""
    return core.parse_random(obj, parse_fault)


def _applies(mode: str, path: str) -> bool:
    return mode not in BODY_FAULTS or path in COMPLETION_PATHS


def fault_book() -> FaultBook:
    """An empty fault book with the vLLM engine's modes."""
    return FaultBook(parse_fault, _applies)


def mutate_body(payload: dict[str, Any], mode: str, model: Model, generate: bool) -> None:
    choice = payload["choices"][0]
    ids = choice.get("token_ids")
    if ids is None:
        ids = []
    lp = choice.get("logprobs") or {}
    content = lp.get("content") if isinstance(lp, dict) else None
    if mode == "missing_token_ids":
        choice.pop("token_ids", None)
    elif mode == "missing_prompt_token_ids":
        payload.pop("prompt_token_ids", None)
    elif mode in ("short_logprobs", "long_logprobs", "null_logprob"):
        if content is None:
            content = [{"token_id": t, "logprob": -0.5, "rank": 1} for t in ids]
            choice["logprobs"] = {"content": content}
        if mode == "short_logprobs":
            del content[-1:]
        elif mode == "long_logprobs":
            content.append(dict(content[-1]) if content else {"token": "x", "logprob": -0.5})
        elif content:
            content[len(content) // 2]["logprob"] = None
    elif mode == "oov_token_id":
        bad = model.vocab_size + 12345
        if ids:
            ids[0] = bad
            if content and "token_id" in content[0]:  # vLLM 0.32's tokens mode
                content[0]["token_id"] = bad
            elif content:
                content[0]["token"] = f"token_id:{bad}" if generate else ""
                content[0]["bytes"] = []
    elif mode == "no_stop_token":
        if ids and ids[-1] in model.stop_set:
            ids.pop()
            if content:
                content.pop()
            usage = payload.get("usage") or {}
            if "completion_tokens" in usage:
                usage["completion_tokens"] -= 1
                usage["total_tokens"] -= 1
