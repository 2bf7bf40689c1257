"""The SGLang engine's HTTP routes: ``/generate`` (docs/wire.md S), the info routes, ``/health`` and
the admin API. Completions come from the vLLM engine's script machinery
(``fasttito.testing.vllm_engine``: the same template-exact tool-calling agent and the same
recovery of a conversation from ids); everything SGLang-specific is here."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
import sys
import time
import uuid
from typing import Any

from aiohttp import web

from fasttito.testing.engine_core.admin import add_admin_routes
from fasttito.testing.engine_core.faults import FaultError, deliver, start_fault
from fasttito.testing.engine_core.http import Dropped, abort_connection, json_response, not_found
from fasttito.testing.sglang_engine.faults import BODY_FAULTS, MALFORMED_BODY, mutate_body
from fasttito.testing.sglang_engine.state import EngineState
from fasttito.testing.vllm_engine.completion import build_completion, fake_logprob
from fasttito.testing.vllm_engine.errors import ApiError
from fasttito.testing.vllm_engine.prefix import StoredTurn, resolve_ids

__all__ = ["build_app"]

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


# --------------------------------------------------------------------------------------------
# /generate
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# App
# --------------------------------------------------------------------------------------------


def _status_response(fault: dict[str, Any]) -> web.StreamResponse:
    return json_response(SglError(f"injected {fault['mode']}").payload(), fault["status"])


async def _read_admin_body(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw else {}


def _admin_error(exc: Exception) -> web.Response:
    return json_response({"error": {"message": str(exc)}}, 400)


def _crash(why: str) -> None:
    """Exit as SGLang 0.5.23's scheduler does on an id outside the vocabulary."""
    print(f"sglang test engine: {why}; exiting like SGLang", file=sys.stderr, flush=True)
    os._exit(1)


def build_app(st: EngineState) -> web.Application:
    app = web.Application(client_max_size=1 << 30)
    s = st.s

    async def generate(request: web.Request) -> web.StreamResponse:
        st.last_activity = time.monotonic()
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
            bad_json = True
        else:
            bad_json = False
        rec = st.record(request, body)
        if request.path in s.disabled_routes:
            rec["status"] = 404
            return not_found()
        fault = st.faults.take(request.path)
        rec["fault"] = fault["mode"] if fault else None
        try:
            if fault and fault["mode"] == "crash":
                asyncio.get_running_loop().call_later(0.05, _crash, "injected crash")
            early = await start_fault(request, fault, rec, _status_response, ("drop", "crash"))
            if early is not None:
                return early
            if bad_json or not isinstance(body, dict):
                raise SglError("the request body must be a JSON object", validation=True)
            ids = check_input_ids(st, body)
            try:
                if isinstance(ids[0], list):
                    prompts = [check_ids_in_vocab(st, p) for p in ids]
                else:
                    prompts = [check_ids_in_vocab(st, ids)]
            except BadId as exc:
                rec["status"] = "bad id"
                rec["error"] = {"message": f"IndexError: index out of range in self ({exc})"}
                if s.bad_id_behaviour == "400":
                    raise SglError(f"token id {exc} is out of vocabulary") from None
                abort_connection(request, reset=False)
                if s.bad_id_behaviour == "crash":
                    asyncio.get_running_loop().call_later(
                        0.05, _crash, f"IndexError: index out of range in self (id {exc})"
                    )
                raise Dropped from None
            rec["prompt_ids"] = prompts[0] if len(prompts) == 1 else prompts
            results = [generate_one(st, body, p, rec) for p in prompts]
            payload: Any = results[0] if not isinstance(ids[0], list) else results
            if fault and fault["mode"] in BODY_FAULTS and isinstance(payload, dict):
                payload = mutate_body(payload, fault, st.model.vocab_size, st.model.stop_set)
            rec["status"] = 200
            if body.get("stream") and isinstance(payload, dict):
                resp = web.StreamResponse(status=200)
                resp.content_type = "text/event-stream"
                await resp.prepare(request)
                for chunk in stream_chunks(st, payload):
                    line = json.dumps(chunk, ensure_ascii=False)
                    await resp.write(f"data: {line}\n\n".encode())
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            data = json.dumps(payload, ensure_ascii=False).encode()
            return await deliver(request, data, fault, rec, MALFORMED_BODY)
        except SglError as exc:
            rec["status"] = exc.status
            rec["error"] = exc.payload()
            return json_response(exc.payload(), exc.status)
        except ApiError as exc:  # the script machinery (vLLM engine): same reason codes
            rec["status"] = exc.status
            rec["error"] = exc.payload()["error"]
            err = {"message": exc.message, **exc.extra}
            return json_response({"error": err}, exc.status)
        except Dropped:
            raise asyncio.CancelledError from None
        except Exception as exc:  # a bug in the engine: say so, loudly
            rec["status"] = 500
            rec["error"] = {"message": repr(exc)}
            print(f"sglang test engine: internal error: {exc!r}", file=sys.stderr, flush=True)
            return json_response(
                {"error": {"message": f"test engine internal error: {exc!r}"}}, 500
            )

    def info(name: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            st.last_activity = time.monotonic()
            rec = st.record(request, None)
            if request.path in s.disabled_routes:
                rec["status"] = 404
                return not_found()
            fault = st.faults.take(request.path)
            rec["fault"] = fault["mode"] if fault else None
            if fault and "status" in fault:
                rec["status"] = fault["status"]
                return _status_response(fault)
            rec["status"] = 200
            if name == "health":
                return web.Response(status=200)
            return json_response(info_payload(name))

        return handler

    def info_payload(name: str) -> dict[str, Any]:
        if name == "models":
            card: dict[str, Any] = {
                "object": "model",
                "created": st.created,
                "owned_by": "sglang",
                "root": st.model.dir,
                "parent": None,
            }
            if not s.hide_max_model_len:
                card["max_model_len"] = s.context_length
            return {"object": "list", "data": [{"id": n, **card} for n in s.served_names]}
        if name == "get_model_info":
            return {
                "model_path": st.model.dir,
                "tokenizer_path": st.model.dir,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": "default",
                "has_image_understanding": False,
                "has_audio_understanding": False,
                "model_type": "test",
                "architectures": None,
            }
        return {  # server_info
            "model_path": st.model.dir,
            "served_model_name": s.served_names[0],
            "context_length": s.context_length,
            "max_req_input_len": s.max_req_input_len,
            "max_total_num_tokens": s.max_total_tokens,
            "skip_tokenizer_init": s.skip_tokenizer_init,
            "enable_return_routed_experts": s.enable_return_routed_experts,
            "version": s.version,
            "internal_states": [{"cached_tokens_in_tree": st.cache.size}],
        }

    app.router.add_post("/generate", generate)
    app.router.add_get("/v1/models", info("models"))
    app.router.add_get("/server_info", info("server_info"))
    app.router.add_get("/get_server_info", info("server_info"))
    app.router.add_get("/get_model_info", info("get_model_info"))
    app.router.add_get("/health", info("health"))
    add_admin_routes(app, st, _read_admin_body, (ApiError, FaultError, ValueError), _admin_error)
    return app
