"""The SGLang engine's ``/generate`` (docs/wire.md S): the request checks, one prompt's answer
(a scripted, template-exact completion from the vLLM engine's machinery, ``cached_tokens``
from the engine's radix cache, logprobs, routed experts) and the streamed chunks."""

from __future__ import annotations

import base64
import hashlib
import struct
import uuid
from typing import Any

from fasttito.testing.sglang_engine.state import EngineState
from fasttito.testing.vllm_engine.completion import build_completion, fake_logprob
from fasttito.testing.vllm_engine.prefix import StoredTurn, resolve_ids

__all__ = [
    "BadId",
    "SglError",
    "check_ids_in_vocab",
    "check_input_ids",
    "generate_one",
    "stream_chunks",
]

DEFAULT_MAX_NEW_TOKENS = 128  # SGLang SamplingParams.max_new_tokens default
SAMPLING_KEYS = frozenset(
    {
        "max_new_tokens",
        "stop",
        "stop_token_ids",
        "stop_regex",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "min_new_tokens",
        "n",
        "json_schema",
        "regex",
        "ebnf",
        "structural_tag",
        "ignore_eos",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "no_stop_trim",
        "custom_params",
        "stream_interval",
        "logit_bias",
        "sampling_seed",
    }
)


class SglError(Exception):
    """An error answered in one of SGLang's two shapes (docs/wire.md S)."""

    def __init__(self, message: str, status: int = 400, validation: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.validation = validation

    def payload(self) -> dict[str, Any]:
        if self.validation:
            return {
                "object": "error",
                "message": self.message,
                "type": "Bad Request",
                "code": self.status,
            }
        return {"error": {"message": self.message}}


class BadId(Exception):
    """An id SGLang 0.5.23 cannot embed (its scheduler dies with IndexError)."""


def routed_experts_b64(st: EngineState, seq: list[int], start: int) -> str:
    """Base64 of int32 ``[positions, layers, topk]`` for positions ``[start, len(seq) - 1)``,
    the span SGLang reports (docs/wire.md S); expert ids are a hash of (token, position, layer)."""
    s = st.s
    out = bytearray()
    for pos in range(max(0, start), max(0, len(seq) - 1)):
        for layer in range(s.num_layers):
            h = hashlib.blake2b(f"{seq[pos]}:{pos}:{layer}".encode(), digest_size=8).digest()
            for k in range(s.topk):
                out += struct.pack("<i", h[k] % s.num_experts)
    return base64.b64encode(bytes(out)).decode("ascii")


def check_input_ids(st: EngineState, body: dict[str, Any]) -> list[Any]:
    ids = body.get("input_ids")
    if ids is None and body.get("text") is None and body.get("input_embeds") is None:
        raise SglError("Either text, input_ids or input_embeds should be provided.")
    if ids is None:
        raise SglError("The test engine serves input_ids only (no text, no input_embeds).")
    if not isinstance(ids, list):
        raise SglError("input_ids must be a list of ints or a list of lists", validation=True)
    if not ids:
        raise SglError("input_ids cannot be empty.")
    return ids


def check_ids_in_vocab(st: EngineState, ids: list[Any]) -> list[int]:
    for t in ids:
        if not isinstance(t, int) or isinstance(t, bool):
            raise SglError(f"input_ids must contain ints, found {t!r}", validation=True)
    if min(ids) < 0 or max(ids) >= st.model.vocab_size:
        raise BadId(min(ids) if min(ids) < 0 else max(ids))
    return list(ids)


def generate_one(
    st: EngineState, body: dict[str, Any], prompt_ids: list[int], rec: dict[str, Any]
) -> dict[str, Any]:
    s = st.s
    sp = body.get("sampling_params") or {}
    if not isinstance(sp, dict):
        raise SglError("sampling_params must be an object", validation=True)
    unknown = sorted(set(sp) - SAMPLING_KEYS)
    if unknown:
        raise SglError(
            f"SamplingParams.__init__() got an unexpected keyword argument '{unknown[0]}'",
            validation=True,
        )
    if sp.get("n", 1) != 1:
        raise SglError("the test engine samples n=1 only", validation=True)
    n = len(prompt_ids)
    if n >= s.context_length:
        raise SglError(
            f"The input ({n} tokens) is longer than the model's context length "
            f"({s.context_length} tokens)."
        )
    rid = body.get("rid")
    if rid is not None and not isinstance(rid, str):
        raise SglError("rid must be a string", validation=True)
    rid = rid or uuid.uuid4().hex
    for key, kind in (("cache_salt", str), ("extra_key", str), ("priority", int)):
        v = body.get(key)
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
            raise SglError(f"{key} must be {kind.__name__}", validation=True)
    meta: dict[str, Any] = {"id": rid}
    if n >= s.max_req_input_len:  # the scheduler's own limit: an abort, not a 400
        meta.update(
            finish_reason={
                "type": "abort",
                "message": f"Input length ({n} tokens) exceeds the maximum allowed length "
                f"({s.max_req_input_len} tokens). Use a shorter input or enable "
                "--allow-auto-truncate.",
                "status_code": 400,
                "err_type": None,
            },
            prompt_tokens=n,
            completion_tokens=0,
            cached_tokens=0,
        )
        return {"text": "", "output_ids": [], "meta_info": meta}
    max_new = sp.get("max_new_tokens")
    if max_new is None:
        max_new = DEFAULT_MAX_NEW_TOKENS
    if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 0:
        raise SglError("max_new_tokens must be a non-negative int", validation=True)
    max_new = min(max_new, s.context_length - n)
    stops = sp.get("stop_token_ids") or []
    if not isinstance(stops, list) or not all(type(t) is int for t in stops):
        raise SglError("stop_token_ids must be a list of ints", validation=True)
    conv, tools, ctk, how = resolve_ids(st.model, st.store, st.script, prompt_ids)
    rec["derived"] = how
    comp = build_completion(st.model, st.script, conv, tools, ctk)
    rec["history_stable"] = comp.stable
    ids = list(comp.ids)
    stop_set = set(stops) | set(st.model.stop_set)
    cut = next((i for i, t in enumerate(ids) if t in stop_set), None)
    if cut is not None:
        ids = ids[: cut + 1]
    if len(ids) > max_new:
        ids = ids[:max_new]
        finish: dict[str, Any] = {"type": "length", "length": max_new}
    else:
        finish = {"type": "stop", "matched": ids[-1]}
    namespace = f"{body.get('cache_salt') or ''}\x00{body.get('extra_key') or ''}"
    cached = min(st.cache.match(prompt_ids, namespace), n - 1)
    st.cache.insert(prompt_ids + ids[:-1], namespace)  # the last id has no KV yet
    if finish["type"] == "stop" and ids == comp.ids:
        st.store.add(prompt_ids + ids, StoredTurn([*conv, comp.message], tools, ctk))
    rec["completion_ids"] = ids
    rec["cached_tokens"] = cached
    meta.update(
        finish_reason=finish,
        prompt_tokens=n,
        weight_version="default",
        completion_tokens=len(ids),
        cached_tokens=cached,
        weight_versions=[{"version": "default", "start": 0, "end": len(ids)}],
        cached_tokens_details=None,
        dp_rank=None,
    )
    if body.get("return_logprob"):
        with_text = bool(body.get("return_text_in_logprobs"))
        top_n = body.get("top_logprobs_num") or 0
        if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 0:
            raise SglError("top_logprobs_num must be a non-negative int", validation=True)

        def entry(lp: float, t: int) -> list[Any]:
            return [lp, t, st.model.token_text(t) if with_text else None]

        lps = [fake_logprob(t, n + i) for i, t in enumerate(ids)]
        meta["input_token_logprobs"] = []
        meta["output_token_logprobs"] = [entry(lp, t) for lp, t in zip(lps, ids, strict=True)]
        if top_n > 0:
            meta["input_top_logprobs"] = []
            meta["output_top_logprobs"] = [
                [entry(lp, t)]
                + [
                    entry(round(lp - 0.75 * j - 0.1, 6), (t + 7919 * j) % st.model.vocab_size)
                    for j in range(1, top_n)
                ]
                for lp, t in zip(lps, ids, strict=True)
            ]
    if body.get("return_routed_experts"):
        if not s.enable_return_routed_experts:
            raise SglError(
                "return_routed_experts needs a server started with --enable-return-routed-experts"
            )
        start = body.get("routed_experts_start_len") or 0
        meta["routed_experts"] = routed_experts_b64(st, prompt_ids + ids, int(start))
    meta["e2e_latency"] = 0.001
    out: dict[str, Any] = {}
    if not s.skip_tokenizer_init:
        text_ids = ids
        if not sp.get("no_stop_trim") and ids and ids[-1] in stop_set:
            text_ids = ids[:-1]
        out["text"] = st.model.decode(
            text_ids, skip_special_tokens=sp.get("skip_special_tokens", True) is not False
        )
    out["output_ids"] = ids
    out["meta_info"] = meta
    return out


def stream_chunks(st: EngineState, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Cumulative chunks (each with every id so far), ``finish_reason`` null until the last."""
    ids = payload.get("output_ids") or []
    meta = payload["meta_info"]
    chunks = []
    for k in range(1, len(ids) + 1):
        last = k == len(ids)
        m = dict(meta)
        m["completion_tokens"] = k
        if not last:
            m["finish_reason"] = None
        for key in ("output_token_logprobs", "output_top_logprobs"):
            if key in meta:
                m[key] = meta[key][:k]
        chunk: dict[str, Any] = {}
        if "text" in payload:
            chunk["text"] = payload["text"] if last else st.model.decode(ids[:k])
        chunk["output_ids"] = ids[:k]
        chunk["meta_info"] = m
        chunks.append(chunk)
    if not chunks:
        chunks.append(payload)
    return chunks
