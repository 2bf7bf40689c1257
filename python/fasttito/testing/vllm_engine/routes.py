"""The vLLM engine's HTTP routes (field names and shapes follow ``docs/wire.md`` sections A and B).

* ``GET /v1/models``: ``{"object": "list", "data": [{"id", "object": "model", "max_model_len",
  ...}]}``
* ``POST /v1/chat/completions``: vLLM's ``ChatCompletionResponse`` (+ ``prompt_token_ids`` and
  ``choices[].token_ids`` when ``return_token_ids``)
* ``POST /v1/chat/completions/tokens``: prime-rl's route: as above, but the prompt ids are
  ``tokens`` (``messages`` must still render); ``len(tokens) >= max_model_len`` is a 400
* ``POST /tokenize``: chat variant (``messages``) and completion variant (``prompt``)
* ``POST /detokenize``: ``{"tokens": [...]}`` -> ``{"prompt": text}``
* ``POST /inference/v1/generate``: vLLM >= 0.20 token-in/token-out (``token_ids`` +
  ``sampling_params``); 403 with ``--no-scale-out``, as vLLM 0.32 without
  ``--enable-scale-out``
* ``GET /health``, ``GET /version``: as vLLM
* ``/_admin/*``: test control (``fasttito.testing.engine_core.admin``; never authenticated,
  never recorded)

With ``--api-key`` every path starting with ``/v1`` needs ``Authorization: Bearer KEY`` (else 401
``{"error": "Unauthorized"}``, vLLM's body). Errors use vLLM's shape
``{"error": {"message", "type", "param", "code"}}``; unknown routes give FastAPI's
``{"detail": "Not Found"}`` (404) / ``{"detail": "Method Not Allowed"}`` (405).

Every non-admin request is recorded (``GET /_admin/requests``): ``{"count": N, "requests":
[{"seq", "time", "method", "path", "query", "headers" (lower-case names;
authorization/cookie/api-key values "<redacted>"), "authorization_present",
"authorization_valid" (null without --api-key), "body" (JSON, or {"_raw": text}), "prompt_ids",
"completion_ids" (as generated, before any fault), "status", "fault", "error",
"history_stable", "derived" (generate: how the conversation was recovered)}]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

from fasttito.testing.engine_core.admin import add_admin_routes
from fasttito.testing.engine_core.faults import FaultError, deliver, start_fault
from fasttito.testing.engine_core.http import Dropped, json_response, not_found
from fasttito.testing.vllm_engine import handlers
from fasttito.testing.vllm_engine.errors import ApiError, bad_request
from fasttito.testing.vllm_engine.faults import BODY_FAULTS, MALFORMED_BODY, mutate_body
from fasttito.testing.vllm_engine.state import Engine

__all__ = ["build_app", "read_json"]


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; a 400 when it is empty or not JSON."""
    raw = await request.read()
    if not raw:
        raise bad_request("request body must be a JSON object")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"JSON decode error: {exc}") from exc
    return body


def _status_response(fault: dict[str, Any]) -> web.StreamResponse:
    if fault.get("body") is not None:
        return web.Response(text=fault["body"], status=fault["status"], content_type="text/plain")
    err = ApiError(fault["status"], f"injected fault {fault['mode']}", "InjectedFault")
    return json_response(err.payload(), fault["status"])


def _admin_error(exc: Exception) -> web.Response:
    err = exc if isinstance(exc, ApiError) else bad_request(str(exc))
    return json_response(err.payload(), err.status)


def _dispatch(engine: Engine, route: str, body: Any, rec: dict[str, Any]) -> dict[str, Any]:
    if route == "models":
        return handlers.models(engine)
    if route == "chat":
        return handlers.chat(engine, body, rec, with_tokens=False)
    if route == "chat_tokens":
        return handlers.chat(engine, body, rec, with_tokens=True)
    if route == "tokenize":
        return handlers.tokenize(engine, body)
    if route == "detokenize":
        return handlers.detokenize(engine, body)
    if route == "generate":
        return handlers.generate(engine, body, rec)
    if route == "version":
        return {"version": engine.s.version}
    raise AssertionError(route)


def build_app(engine: Engine) -> web.Application:
    @web.middleware
    async def fastapi_like_404(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            return not_found()
        except web.HTTPMethodNotAllowed:
            return json_response({"detail": "Method Not Allowed"}, 405)

    app = web.Application(middlewares=[fastapi_like_404], client_max_size=1 << 30)

    async def serve(request: web.Request, route: str) -> web.StreamResponse:
        engine.last_activity = time.monotonic()
        body: Any = None
        body_error: ApiError | None = None
        if request.method == "POST":
            try:
                body = await read_json(request)
            except ApiError as exc:
                body_error = exc
                body = {"_raw": (await request.read()).decode("utf-8", errors="replace")}
        rec = engine.record(request, body)
        if request.path in engine.s.disabled_routes:
            return not_found(rec)
        if request.path == "/inference/v1/generate" and not engine.s.scale_out:
            # vLLM 0.32's answer, measured on a running server (docs/wire.md)
            rec["status"] = 403
            err = ApiError(
                403,
                "Scale-out endpoints are disabled. Restart vllm serve with --enable-scale-out "
                "to enable them.",
                "Forbidden",
            )
            return json_response(err.payload(), 403)
        fault = engine.faults.take(request.path, rec)
        try:
            early = await start_fault(request, fault, rec, _status_response)
            if early is not None:
                return early
            if (
                engine.s.api_key is not None
                and request.path.startswith("/v1")
                and not rec["authorization_valid"]
            ):
                rec["status"] = 401
                return json_response({"error": "Unauthorized"}, 401)
            if body_error is not None:
                raise body_error
            if request.method == "POST" and not isinstance(body, dict):
                raise bad_request("request body must be a JSON object")
            payload = _dispatch(engine, route, body, rec)
            if fault and fault["mode"] in BODY_FAULTS:
                mutate_body(payload, fault["mode"], engine.model, route == "generate")
            data = json.dumps(payload, ensure_ascii=False).encode()
            rec["status"] = 200
            return await deliver(request, data, fault, rec, MALFORMED_BODY)
        except ApiError as exc:
            rec["status"] = exc.status
            rec["error"] = exc.payload()["error"]
            return json_response(exc.payload(), exc.status)
        except Dropped:
            raise asyncio.CancelledError from None
        except Exception as exc:  # a bug in the engine: say so, loudly
            rec["status"] = 500
            rec["error"] = {"message": repr(exc)}
            print(f"test engine: internal error on {request.path}: {exc!r}", file=sys.stderr)
            err = ApiError(500, f"test engine internal error: {exc!r}", "InternalServerError")
            return json_response(err.payload(), 500)

    def route(name: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await serve(request, name)

        return handler

    async def health(request: web.Request) -> web.StreamResponse:
        engine.last_activity = time.monotonic()
        engine.record(request, None)["status"] = 200
        return web.Response(status=200)

    app.router.add_get("/v1/models", route("models"))
    app.router.add_post("/v1/chat/completions", route("chat"))
    app.router.add_post("/v1/chat/completions/tokens", route("chat_tokens"))
    app.router.add_post("/tokenize", route("tokenize"))
    app.router.add_post("/detokenize", route("detokenize"))
    app.router.add_post("/inference/v1/generate", route("generate"))
    app.router.add_get("/version", route("version"))
    app.router.add_get("/health", health)
    add_admin_routes(app, engine, read_json, (ApiError, FaultError), _admin_error)
    return app
