"""The SGLang engine's HTTP routes: ``/generate`` (``fasttito.testing.sglang_engine.generate``),
the info routes, ``/health`` and the admin API (``fasttito.testing.engine_core.admin``), with
the faults of ``fasttito.testing.sglang_engine.faults``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from aiohttp import web

from fasttito.testing.engine_core.admin import add_admin_routes
from fasttito.testing.engine_core.faults import FaultError, deliver, start_fault
from fasttito.testing.engine_core.http import Dropped, abort_connection, json_response, not_found
from fasttito.testing.sglang_engine.faults import BODY_FAULTS, MALFORMED_BODY, mutate_body
from fasttito.testing.sglang_engine.generate import (
    BadId,
    SglError,
    check_ids_in_vocab,
    check_input_ids,
    generate_one,
    stream_chunks,
)
from fasttito.testing.sglang_engine.state import EngineState
from fasttito.testing.vllm_engine.errors import ApiError

__all__ = ["build_app"]


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
            return not_found(rec)
        fault = st.faults.take(request.path, rec)
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
                return not_found(rec)
            fault = st.faults.take(request.path, rec)
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
