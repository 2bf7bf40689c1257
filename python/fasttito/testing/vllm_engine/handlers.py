"""The bodies of the vLLM engine's routes (field names and shapes follow ``docs/wire.md``
sections A and B): each takes the engine and the request's JSON object and returns the answer's.

``max_tokens`` / ``max_completion_tokens`` (chat) or ``sampling_params.max_tokens`` (generate) cut
the turn: ``finish_reason: "length"``, no stop token, ``content`` = decoded text, no tool calls.
The default is ``max_model_len - prompt_len`` (vLLM's ``get_max_tokens``; prime-rl's generate
default). An id of the request's ``stop_token_ids`` inside the turn ends it there
(``finish_reason: "stop"``, ``stop_reason: id``).
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from fasttito.testing.vllm_engine.completion import build_completion
from fasttito.testing.vllm_engine.errors import bad_request
from fasttito.testing.vllm_engine.messages import normalize_messages, normalize_tools
from fasttito.testing.vllm_engine.model import TemplateFailure
from fasttito.testing.vllm_engine.prefix import StoredTurn, resolve_ids
from fasttito.testing.vllm_engine.responses import (
    logprob_entries,
    response_message,
    token_entries,
)
from fasttito.testing.vllm_engine.state import Engine

__all__ = ["chat", "detokenize", "generate", "models", "tokenize"]


def models(engine: Engine) -> dict[str, Any]:
    data: list[dict[str, Any]] = [
        {
            "id": name,
            "object": "model",
            "created": engine.created,
            "owned_by": "vllm",
            "root": engine.model.dir,
            "parent": None,
            "max_model_len": engine.s.max_model_len,
            "permission": [],
        }
        for name in engine.s.served_names
    ]
    return {"object": "list", "data": data}


def chat(
    engine: Engine, body: dict[str, Any], rec: dict[str, Any], with_tokens: bool
) -> dict[str, Any]:
    name = engine.check_model(body)
    engine.check_common(body)
    conv = normalize_messages(body.get("messages"))
    tools = normalize_tools(body.get("tools"))
    ctk = body.get("chat_template_kwargs") or {}
    if not isinstance(ctk, dict):
        raise bad_request("'chat_template_kwargs' must be an object")
    agp = body.get("add_generation_prompt", True)
    cfm = bool(body.get("continue_final_message", False))
    if agp and cfm:
        raise bad_request(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
        )
    try:
        rendered = engine.model.render(
            conv, tools, add_generation_prompt=bool(agp), continue_final_message=cfm, ctk=ctk
        )
    except TemplateFailure as exc:
        raise bad_request(f"chat template failed on the request messages: {exc}") from exc
    if with_tokens:
        if "tokens" not in body:
            raise bad_request("'tokens' is required on /v1/chat/completions/tokens")
        prompt_ids = engine.check_ids(body.get("tokens"), "tokens")
    else:
        prompt_ids = engine.model.encode(rendered)
    rec["prompt_ids"] = prompt_ids
    requested = body.get("max_completion_tokens")
    if requested is None:
        requested = body.get("max_tokens")
    max_tokens = engine.max_tokens(requested, len(prompt_ids))
    extra_stops = engine.stop_ids(body.get("stop_token_ids"))
    logprobs = body.get("logprobs") or False
    if not isinstance(logprobs, bool):
        raise bad_request("'logprobs' must be a boolean on chat completions")
    top = body.get("top_logprobs")
    if top is not None:
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
            raise bad_request("'top_logprobs' must be an integer in 0..20")
        if top > 0 and not logprobs:
            raise bad_request("when using `top_logprobs`, `logprobs` must be set to true.")
    n = body.get("n", 1) or 1
    if not isinstance(n, int) or n < 1:
        raise bad_request("'n' must be an integer >= 1")
    comp = build_completion(engine.model, engine.script, conv, tools, ctk)
    rec["history_stable"] = comp.stable
    rec["history_detail"] = comp.stable_detail
    ids, finish, stop_reason, complete = engine.finish(comp, max_tokens, extra_stops)
    rec["completion_ids"] = ids
    if complete:
        engine.store.add(prompt_ids + ids, StoredTurn([*conv, comp.message], tools, ctk))
    as_ids = bool(body.get("return_tokens_as_token_ids"))
    ret_ids = bool(body.get("return_token_ids"))
    message = response_message(engine.model, comp.message, ids, complete)
    choices = []
    for i in range(n):
        choices.append(
            {
                "index": i,
                "message": copy.deepcopy(message),
                "logprobs": (
                    {
                        "content": logprob_entries(
                            engine.model, ids, len(prompt_ids), top or 0, as_ids
                        )
                    }
                    if logprobs
                    else None
                ),
                "finish_reason": finish,
                "stop_reason": stop_reason,
                "token_ids": list(ids) if ret_ids else None,
            }
        )
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": None,
        "usage": {
            "prompt_tokens": len(prompt_ids),
            "total_tokens": len(prompt_ids) + len(ids) * n,
            "completion_tokens": len(ids) * n,
            "prompt_tokens_details": None,
        },
        "prompt_logprobs": None,
        "prompt_token_ids": list(prompt_ids) if ret_ids else None,
        "kv_transfer_params": None,
    }


def tokenize(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    engine.check_model(body)
    if "messages" in body:
        conv = normalize_messages(body.get("messages"))
        tools = normalize_tools(body.get("tools"))
        agp = body.get("add_generation_prompt", True)
        cfm = body.get("continue_final_message", False)
        if agp and cfm:
            raise bad_request(
                "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
            )
        ctk = body.get("chat_template_kwargs") or {}
        if not isinstance(ctk, dict):
            raise bad_request("'chat_template_kwargs' must be an object")
        if body.get("chat_template") is not None:
            raise bad_request("'chat_template' overrides are not supported by the test engine")
        try:
            text = engine.model.render(
                conv,
                tools,
                add_generation_prompt=bool(agp),
                continue_final_message=bool(cfm),
                ctk=ctk,
            )
        except TemplateFailure as exc:
            raise bad_request(f"chat template failed: {exc}") from exc
        ids = engine.model.encode(text, bool(body.get("add_special_tokens", False)))
    elif "prompt" in body:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise bad_request("'prompt' must be a string")
        ids = engine.model.encode(prompt, bool(body.get("add_special_tokens", True)))
    else:
        raise bad_request("/tokenize needs 'messages' (chat) or 'prompt' (completion)")
    strs = engine.model.tok.convert_ids_to_tokens(ids) if body.get("return_token_strs") else None
    return {
        "count": len(ids),
        "max_model_len": engine.s.max_model_len,
        "tokens": ids,
        "token_strs": strs,
    }


def detokenize(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    engine.check_model(body)
    ids = engine.check_ids(body.get("tokens"), "tokens")
    return {"prompt": engine.model.decode(ids)}


def generate(engine: Engine, body: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    engine.check_model(body)
    engine.check_common(body)
    prompt_ids = engine.check_ids(body.get("token_ids"), "token_ids")
    rec["prompt_ids"] = prompt_ids
    sp = body.get("sampling_params") or {}
    if not isinstance(sp, dict):
        raise bad_request("'sampling_params' must be an object")
    max_tokens = engine.max_tokens(sp.get("max_tokens"), len(prompt_ids))
    extra_stops = engine.stop_ids(sp.get("stop_token_ids"))
    n_lp = sp.get("logprobs")
    if n_lp is not None and (not isinstance(n_lp, int) or isinstance(n_lp, bool) or n_lp < 0):
        raise bad_request("sampling_params.logprobs must be an integer >= 0 or null")
    conv, tools, ctk, how = resolve_ids(engine.model, engine.store, engine.script, prompt_ids)
    rec["derived"] = how
    comp = build_completion(engine.model, engine.script, conv, tools, ctk)
    rec["history_stable"] = comp.stable
    rec["history_detail"] = comp.stable_detail
    ids, finish, _, complete = engine.finish(comp, max_tokens, extra_stops)
    if finish == "tool_calls":
        finish = "stop"  # /inference/v1/generate never says tool_calls (docs/wire.md B.2)
    rec["completion_ids"] = ids
    if complete:
        engine.store.add(prompt_ids + ids, StoredTurn([*conv, comp.message], tools, ctk))
    tokens_mode = engine.s.generate_shape == "tokens"
    if n_lp is None:
        logprobs = None
    elif tokens_mode:
        logprobs = {"content": token_entries(engine.model, ids, len(prompt_ids), n_lp)}
    else:
        logprobs = {"content": logprob_entries(engine.model, ids, len(prompt_ids), n_lp, True)}
    echo = not tokens_mode or body.get("return_token_ids") is True
    out: dict[str, Any] = {
        "request_id": body.get("request_id") or f"gen-{uuid.uuid4().hex}",
        "choices": [
            {
                "index": 0,
                "logprobs": logprobs,
                "finish_reason": finish,
                "token_ids": list(ids),
            }
        ],
        "prompt_logprobs": None,
        "kv_transfer_params": None,
        "usage": {
            "prompt_tokens": len(prompt_ids),
            "total_tokens": len(prompt_ids) + len(ids),
            "completion_tokens": len(ids),
            "prompt_tokens_details": None,
        },
        "prompt_token_ids": list(prompt_ids) if echo else None,
    }
    if tokens_mode:
        out["output_mode"] = "tokens"
        out["choices"][0]["stop_reason"] = None
        out["choices"][0]["routed_experts"] = None
    return out
