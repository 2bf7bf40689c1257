"""Limits: every bound on outside data is configurable from ``Client`` (``ClientConfig``) and the
Python API, has a safe default, and is named in the error it raises. Secrets (the api key,
``Authorization`` and custom auth headers, URL credentials) never reach an exception, its
traceback, a repr or a log record, on any path: HTTP errors, retries, transport failures.

The servers are real HTTP servers on 127.0.0.1: the local vLLM-compatible engine, and small
aiohttp apps started here for answers the engine does not give (a deep body, an echo of the
request headers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import shutil
import socket
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fasttito
import pytest
from aiohttp import web
from conftest import VENDORED_MODEL_DIR
from fasttito.config import ClientConfig
from fasttito.testing.launch import EngineProcess, start_engine

MODEL = "limits-model"
SECRET = "sk-limits-5e4d3c2b1a"
AUTH_SECRET = "Bearer-custom-77aa88bb"
KEY_SECRET = "apikey-0f1e2d3c4b"
PASSWORD = "hunter2"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def eng() -> Iterator[EngineProcess]:
    with start_engine(VENDORED_MODEL_DIR, served_model_name=MODEL) as e:
        yield e


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "eng" in request.fixturenames:
        request.getfixturevalue("eng").reset()


@pytest.fixture(scope="module")
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


@asynccontextmanager
async def serve(handler: Callable[[web.Request], Any]) -> AsyncIterator[str]:
    """A one-route-for-all aiohttp server on 127.0.0.1; yields its /v1 URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def all_text(exc: BaseException) -> str:
    """Everything an exception can show: message, repr, fields, the formatted traceback with
    its whole cause/context chain, and its pickled form."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    parts += [str(v) for v in vars(exc).values()]
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(repr(seen))
        seen = seen.__cause__ or seen.__context__
    parts.append(repr(pickle.loads(pickle.dumps(exc))))
    return "\n".join(parts)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (SECRET, AUTH_SECRET, KEY_SECRET, PASSWORD):
            assert secret not in text, f"{secret!r} leaked into: {text[:400]}"


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "name",
    [
        "max_body_bytes",
        "max_error_body_bytes",
        "max_json_depth",
        "template_fuel",
        "template_recursion",
        "max_rollout_messages",
        "max_rollout_tokens",
    ],
)
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_every_limit_is_validated_by_name(name: str, bad: Any) -> None:
    with pytest.raises(fasttito.ConfigError, match=name):
        ClientConfig(base_url="http://127.0.0.1:9/v1", model=MODEL, **{name: bad})


def test_limits_have_safe_defaults_and_reach_the_client(tok: fasttito.Tokenizer) -> None:
    cfg = ClientConfig(base_url="http://127.0.0.1:9/v1", model=MODEL)
    assert cfg.max_body_bytes == 1 << 30 and cfg.max_json_depth == 64
    assert cfg.template_fuel == 5_000_000 and cfg.template_recursion == 200
    assert cfg.max_rollout_messages == 10_000 and cfg.max_rollout_tokens == 8 << 20
    c = fasttito.Client(
        "http://127.0.0.1:9/v1",
        MODEL,
        transport="vllm-generate",
        tokenizer=tok,
        max_json_depth=9,
        max_rollout_messages=3,
        max_rollout_tokens=77,
    )
    assert (c.config.max_json_depth, c.config.max_rollout_messages) == (9, 3)
    assert c.config.max_rollout_tokens == 77


# --------------------------------------------------------------------------- rollout limits


def test_rollout_message_limit_without_http(tok: fasttito.Tokenizer) -> None:
    r = fasttito.Rollout(tok, max_messages=4)
    r.prepare([{"role": "user", "content": str(i)} for i in range(4)])
    with pytest.raises(fasttito.RolloutLimitError, match="max_rollout_messages=4") as ei:
        r.prepare(iter([{"role": "user", "content": str(i)} for i in range(5)]))
    err = ei.value
    assert (err.limit, err.value, err.maximum) == ("max_rollout_messages", 5, 4)
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.limit, again.value, again.maximum, str(again)) == (
        err.limit,
        err.value,
        err.maximum,
        str(err),
    )
    with pytest.raises(fasttito.RolloutLimitError):
        r.begin([{"role": "user", "content": "x"}] * 5)


def test_rollout_token_limit_without_http(tok: fasttito.Tokenizer) -> None:
    n = len(tok.apply_chat_template(USER, add_generation_prompt=True))
    fasttito.Rollout(tok, max_tokens=n).prepare(USER)  # exactly at the limit: fine
    with pytest.raises(
        fasttito.RolloutLimitError, match=f"{n} token ids, over max_rollout_tokens"
    ) as ei:
        fasttito.Rollout(tok, max_tokens=n - 1).prepare(USER)
    assert (ei.value.limit, ei.value.value, ei.value.maximum) == ("max_rollout_tokens", n, n - 1)
    with pytest.raises(fasttito.ConfigError, match="max_tokens"):
        fasttito.Rollout(tok, max_tokens=0)


def test_rollout_limits_through_the_client(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="text")

    async def go(transport: str, **limits: Any) -> None:
        async with fasttito.Client(
            eng.v1_url, MODEL, transport=transport, tokenizer=tok, **limits
        ) as c:
            await c.rollout().generate(USER * 3)

    for transport in ("vllm-generate", "chat", "vllm-chat-tokens"):
        with pytest.raises(fasttito.RolloutLimitError, match="max_rollout_messages=2"):
            asyncio.run(go(transport, max_rollout_messages=2))
    with pytest.raises(fasttito.RolloutLimitError, match="max_rollout_tokens=5"):
        asyncio.run(go("vllm-generate", max_rollout_tokens=5))
    # nothing was sent for any of them
    assert not [r for r in eng.requests() if r["path"] != "/v1/models"]


# --------------------------------------------------------------------------- response limits


def test_json_depth_limit_through_the_client(tok: fasttito.Tokenizer) -> None:
    deep = b'{"choices": [{"x": ' + b"[" * 30 + b"]" * 30 + b"}]}"

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=deep, content_type="application/json")

    async def go(depth: int) -> None:
        async with serve(handler) as url:
            c = fasttito.Client(
                url,
                MODEL,
                transport="vllm-generate",
                tokenizer=tok,
                max_json_depth=depth,
                check_prompt_length=False,
            )
            async with c:
                await c.rollout().generate(USER)

    with pytest.raises(fasttito.ResponseParseError, match="max_json_depth") as ei:
        asyncio.run(go(16))
    assert "deeper than 16 levels" in str(ei.value)
    # a deeper limit lets the same body through to the shape check, which refuses it otherwise
    with pytest.raises(fasttito.ResponseParseError) as ei:
        asyncio.run(go(64))
    assert "max_json_depth" not in str(ei.value)
    with pytest.raises(fasttito.ResponseParseError, match="max_depth"):
        fasttito.parse_response(deep, "vllm-generate", max_depth=8)


def test_body_size_limit_through_the_client(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="text", content="x " * 4000)

    async def go() -> None:
        async with fasttito.Client(
            eng.v1_url, MODEL, transport="vllm-generate", tokenizer=tok, max_body_bytes=4096
        ) as c:
            await c.rollout().generate(USER, max_tokens=None)

    with pytest.raises(fasttito.ResponseTooLargeError, match="max_body_bytes=4096"):
        asyncio.run(go())


# --------------------------------------------------------------------------- template limits

RECURSIVE = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"
LOOPING = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"


def hostile_folder(tmp_path: Path, template: str) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    shutil.copy(Path(VENDORED_MODEL_DIR) / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((Path(VENDORED_MODEL_DIR) / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_template_recursion_limit_named(tmp_path: Path) -> None:
    folder = hostile_folder(tmp_path, RECURSIVE)
    c = fasttito.Client(
        "http://127.0.0.1:9/v1",
        MODEL,
        transport="vllm-generate",
        tokenizer=folder,
        template_recursion=20,
    )
    assert c.tokenizer is not None
    with pytest.raises(fasttito.TemplateLimitError, match="template_recursion"):
        c.tokenizer.apply_chat_template(USER)
    with pytest.raises(fasttito.TemplateLimitError, match="template_recursion"):
        fasttito.Tokenizer.from_dir(folder, template_recursion=5).apply_chat_template(USER)


def test_template_fuel_limit_named(tmp_path: Path) -> None:
    folder = hostile_folder(tmp_path, LOOPING)
    c = fasttito.Client(
        "http://127.0.0.1:9/v1",
        MODEL,
        transport="vllm-generate",
        tokenizer=folder,
        template_fuel=10_000,
    )
    assert c.tokenizer is not None
    with pytest.raises(fasttito.TemplateLimitError, match="template_fuel"):
        c.tokenizer.apply_chat_template(USER)
    # a rollout whose local render runs out of fuel plans the turn as messages without ids,
    # bounded in time (the engine's own template then decides)
    plan = fasttito.Rollout(c.tokenizer).prepare(USER)
    assert plan.mode == "mito" and plan.prompt_ids is None


# --------------------------------------------------------------------------- secrets

HEADERS = {"Proxy-Authorization": AUTH_SECRET, "X-Api-Key": KEY_SECRET}


def secret_client(url: str, tok: fasttito.Tokenizer, **kw: Any) -> fasttito.Client:
    return fasttito.Client(
        url,
        MODEL,
        transport="vllm-generate",
        tokenizer=tok,
        api_key=SECRET,
        headers=HEADERS,
        backoff=0.01,
        check_prompt_length=False,
        **kw,
    )


@pytest.mark.parametrize("status", [401, 403, 422, 500, 503])
def test_secrets_echoed_by_the_server_are_redacted(
    tok: fasttito.Tokenizer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that echoes the request's headers in its error body (many proxies do)."""

    async def handler(request: web.Request) -> web.Response:
        echo = {k: v for k, v in request.headers.items()}
        return web.json_response({"error": "nope", "headers": echo}, status=status)

    async def go() -> None:
        async with serve(handler) as url:
            async with secret_client(url, tok, max_retries=2) as c:
                await c.rollout().generate(USER)

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(fasttito.ServerError) as ei:
            asyncio.run(go())
    err = ei.value
    assert err.status_code == status and "<redacted>" in err.body
    assert_no_secret(all_text(err), *(r.getMessage() for r in caplog.records))
    if status == 503:
        assert sum("retry" in r.getMessage() for r in caplog.records) == 2


def test_secrets_kept_out_of_transport_errors_and_retry_logs(
    tok: fasttito.Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url, kw in (
        (f"http://127.0.0.1:{port}/v1?token={SECRET}", {"api_key": SECRET}),
        (f"http://admin:{PASSWORD}@127.0.0.1:{port}/v1", {}),
    ):
        caplog.clear()
        c = fasttito.Client(
            url,
            MODEL,
            transport="vllm-generate",
            tokenizer=tok,
            headers=HEADERS,
            backoff=0.01,
            max_retries=2,
            **kw,
        )
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(fasttito.TransportError) as ei:
                asyncio.run(c.rollout().generate(USER))
        assert "2 retries" in str(ei.value)
        logs = [r.getMessage() for r in caplog.records]
        assert sum("retry" in m for m in logs) == 2
        assert_no_secret(all_text(ei.value), *logs)


def test_url_credentials_with_an_api_key_is_a_config_error(tok: fasttito.Tokenizer) -> None:
    """aiohttp cannot send both and raised a bare ValueError at the first request."""
    for kw in ({"api_key": SECRET}, {"headers": {"authorization": AUTH_SECRET}}):
        with pytest.raises(fasttito.ConfigError, match="carries credentials") as ei:
            fasttito.Client(
                f"http://admin:{PASSWORD}@127.0.0.1:9/v1", MODEL, transport="chat", **kw
            )
        assert_no_secret(all_text(ei.value))


def test_secrets_kept_out_of_timeouts_and_resets(
    eng: EngineProcess, tok: fasttito.Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    eng.script(mode="text")
    for mode, exc in (("stall", fasttito.RequestTimeoutError), ("reset", fasttito.TransportError)):
        eng.reset()
        eng.faults({"mode": mode, "count": 2, "seconds": 2.0, "path": "/inference/v1/generate"})
        c = secret_client(eng.v1_url, tok, max_retries=1, timeout=0.5)
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(exc) as ei:
                asyncio.run(c.rollout().generate(USER))
        assert_no_secret(all_text(ei.value), *(r.getMessage() for r in caplog.records))
        rec = eng.requests()[-1]
        assert rec["authorization_present"]  # the key was sent, only never shown


def test_secrets_kept_out_of_reprs(tok: fasttito.Tokenizer) -> None:
    c = secret_client(f"http://127.0.0.1:9/v1?key={SECRET}", tok)
    assert_no_secret(repr(c), repr(c.config), str(c.config), repr(c.rollout()))
    assert "Proxy-Authorization" in repr(c) and "X-Api-Key" in repr(c)
