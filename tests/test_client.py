"""fasttito.Client against real servers: the local vLLM-compatible engine (fasttito.testing) and the
real NVIDIA Dynamo 1.6.1 frontend, with the vendored Qwen2.5 tokenizer.

For every transport: an 8-turn tool-using rollout where every turn >= 2 is TITO, turn k's prompt
starts with turn k-1's prompt + completion, the engine received exactly the stitched ids,
``cache_salt``/``priority`` arrive where each server expects them and logprobs are aligned. Then
the error paths: 4xx (not retried), 5xx (retried), timeouts, connection refused, malformed or
misaligned responses, secrets kept out of reprs, errors and logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
from collections.abc import Iterator
from typing import Any

import fasttito
import pytest
from conftest import VENDORED_MODEL_DIR
from fasttito.http import AiohttpPoster, HttpResponse
from fasttito.testing.launch import EngineProcess, start_engine

MODEL = "test-model"
DYN_SERVED = "qwen2.5-tito"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
SECRET = "sk-test-9f8e7d6c5b4a"
HEADER_SECRET = "hdr-value-0a1b2c3d"


# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture(scope="module")
def eng() -> Iterator[EngineProcess]:
    with start_engine(
        VENDORED_MODEL_DIR, served_model_name=MODEL, extra_args=["--scheduling-policy", "priority"]
    ) as e:
        yield e


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "eng" in request.fixturenames:
        request.getfixturevalue("eng").reset()
    fasttito.reset_metrics()


@pytest.fixture(scope="module")
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


class RecordingPoster:
    """The default aiohttp Poster, recording each exchange (for Dynamo, which has no admin
    API: what was sent, and what came back)."""

    def __init__(self) -> None:
        self.inner = AiohttpPoster(max_connections=16)
        self.log: list[tuple[str, str, bytes | None, HttpResponse]] = []

    async def request(self, method: str, url: str, body: bytes | None, **kw: Any) -> HttpResponse:
        resp = await self.inner.request(method, url, body, **kw)
        self.log.append((method, url, body, resp))
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


async def tool_rollout(
    client: fasttito.Client, n_turns: int = 8, **gen: Any
) -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
    """The agent loop: every tool call gets a result; a text answer gets a new user question."""
    rollout = client.rollout()
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    turns = []
    for _ in range(n_turns):
        turn = await rollout.generate(messages, tools=TOOLS, **gen)
        turns.append(turn)
        messages.append(turn.message())
        if turn.tool_calls:
            for i, tc in enumerate(turn.tool_calls):
                messages.append({"role": "tool", "tool_call_id": tc["id"], "content": f"sunny {i}"})
        else:
            messages.append({"role": "user", "content": "And in Rome?"})
    assert len(rollout) == n_turns
    return turns, messages


def check_tito_chain(turns: list[fasttito.Turn]) -> None:
    assert turns[0].mode == "mito" and turns[0].fallback_reason == "first_turn"
    for k, turn in enumerate(turns[1:], start=2):
        assert turn.mode == "tito" and turn.fallback_reason is None, f"turn {k}: {turn!r}"
        prev = turns[k - 2]
        head = list(prev.prompt_ids) + list(prev.completion_ids)
        assert list(turn.prompt_ids)[: len(head)] == head, f"turn {k} does not extend turn {k - 1}"
        assert len(turn.prompt_ids) > len(head)
        assert turn.tokens_reused == len(head), f"turn {k}: {turn.tokens_reused} != {len(head)}"
        assert turn.tokens_reused + turn.bridge_tokens == len(turn.prompt_ids)
    assert (turns[0].tokens_reused, turns[0].bridge_tokens) == (0, 0)
    for turn in turns:
        lps = turn.completion_logprobs
        assert lps is not None and len(lps) == len(turn.completion_ids) > 0
        assert all(math.isfinite(x) and x < 0 for x in lps)
        assert turn.null_logprobs == 0
        assert turn.finish_reason in ("stop", "tool_calls") and not turn.is_truncated
    m = fasttito.metrics()
    assert m["tito"] == len(turns) - 1 and m["mito"] == 1, m
    bad = {
        k: v for k, v in m.items() if k.startswith("fallback.") and v and k != "fallback.first_turn"
    }
    assert not bad, bad


def records(eng: EngineProcess, path: str) -> list[dict[str, Any]]:
    return [r for r in eng.requests() if r["path"] == path]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------- config


def test_transport_names_aliases_and_unknown() -> None:
    for name, want in [
        ("vllm-generate", "vllm-generate"),
        ("vllm_generate", "vllm-generate"),
        ("prime_vllm_generate", "vllm-chat-tokens"),
        ("vllm-chat-tokens", "vllm-chat-tokens"),
        ("dynamo_chat_nvext", "dynamo-nvext"),
        ("dynamo", "dynamo-nvext"),
        ("dynamo_chat", "dynamo-nvext"),
        ("chat", "chat"),
    ]:
        c = fasttito.Client(
            "http://127.0.0.1:9/v1", MODEL, transport=name, tokenizer=VENDORED_MODEL_DIR
        )
        assert c.transport == want
    with pytest.raises(fasttito.ConfigError) as ei:
        fasttito.Client("http://127.0.0.1:9/v1", MODEL, transport="sglang")
    assert isinstance(ei.value, ValueError)
    for name in (
        "vllm-generate",
        "vllm-chat-tokens",
        "dynamo-nvext",
        "chat",
        "auto",
        "prime_vllm_generate",
    ):
        assert name in str(ei.value)
    with pytest.raises(fasttito.ConfigError, match="needs a tokenizer"):
        fasttito.Client("http://127.0.0.1:9/v1", MODEL, transport="vllm-generate")
    with pytest.raises(fasttito.ConfigError):
        fasttito.Client("127.0.0.1:9", MODEL, transport="chat")
    assert fasttito.Client("http://h:1", MODEL, transport="auto").transport == "auto"


def test_secrets_never_in_repr() -> None:
    # URL credentials and an api_key cannot both be sent (a ConfigError, tests/test_limits.py)
    for url, key in (
        (f"http://user:{SECRET}@127.0.0.1:9/v1?key={SECRET}", None),
        (f"http://127.0.0.1:9/v1?key={SECRET}", SECRET),
    ):
        c = fasttito.Client(
            url, MODEL, transport="chat", api_key=key, headers={"X-Tenant": HEADER_SECRET}
        )
        for text in (repr(c), str(c), repr(c.config), repr(c.rollout())):
            assert SECRET not in text and HEADER_SECRET not in text, text
        assert "X-Tenant" in repr(c)


# --------------------------------------------------------------------------- vLLM engine rollouts


def test_vllm_generate_8_turn_tool_rollout(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="tool_agent", tool_calls=7)

    async def go() -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
        async with fasttito.Client(
            eng.v1_url, MODEL, transport="vllm_generate", tokenizer=tok
        ) as c:
            return await tool_rollout(c, cache_salt="step-7", priority=3, max_tokens=512, top_p=0.9)

    turns, _ = run(go())
    check_tito_chain(turns)
    recs = records(eng, "/inference/v1/generate")
    assert len(recs) == 8
    for turn, rec in zip(turns, recs, strict=True):
        body = rec["body"]
        assert rec["status"] == 200
        assert body["token_ids"] == list(turn.prompt_ids) == rec["prompt_ids"]
        assert rec["completion_ids"] == list(turn.completion_ids)
        assert body["cache_salt"] == "step-7" and body["priority"] == 3  # root (docs/wire.md B.2)
        sp = body["sampling_params"]
        assert sp["max_tokens"] == 512 and sp["top_p"] == 0.9 and sp["temperature"] == 1.0
        assert sp["stop_token_ids"] == tok.stop_token_ids and sp["logprobs"] >= 1
        assert sp["skip_special_tokens"] is False
    # turn 1 is the full local render, equal to the engine's own (transformers) render
    assert turns[0].completion_ids[-1] in tok.stop_token_ids
    for k, rec in enumerate(recs[1:], start=2):
        assert rec["derived"], f"turn {k}: engine could not resolve the stitched ids"
    assert turns[-1].content == "Final answer after 7 tool calls."
    # ids only: the message is decoded locally (Hermes tool calls for Qwen2.5)
    assert [t.finish_reason for t in turns] == ["tool_calls"] * 7 + ["stop"]
    assert all(t.message()["tool_calls"] and t.tool_calls for t in turns[:7])
    assert all(t.unparsed_tool_calls == 0 for t in turns)


def test_vllm_generate_decodes_tool_calls(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="tool_agent", tool_calls=1)

    async def go() -> fasttito.Turn:
        async with fasttito.Client(
            eng.v1_url, MODEL, transport="vllm-generate", tokenizer=tok
        ) as c:
            return await c.rollout().generate(
                [{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS
            )

    turn = run(go())
    assert turn.finish_reason == "tool_calls"
    (call,) = turn.tool_calls
    assert call["function"]["name"] == "get_weather"
    # the message is what Qwen2.5's template renders back (arguments as a dict), the turn's
    # tool calls are in OpenAI shape (arguments as a JSON string)
    (mcall,) = turn.message()["tool_calls"]
    assert mcall["function"]["arguments"] == json.loads(call["function"]["arguments"])
    assert mcall["id"] == call["id"] and turn.message()["role"] == "assistant"
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "Weather in Paris?"}, turn.message()], tools=TOOLS
    )
    assert (
        list(turn.prompt_ids) + list(turn.completion_ids)
        == rendered[: len(turn.prompt_ids) + len(turn.completion_ids)]
    )


@pytest.mark.parametrize("local", [False, True], ids=["remote-tokenize", "local-tokenizer"])
def test_vllm_chat_tokens_8_turn_tool_rollout(
    eng: EngineProcess, tok: fasttito.Tokenizer, local: bool
) -> None:
    eng.script(mode="tool_agent", tool_calls=7)

    async def go() -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
        async with fasttito.Client(
            eng.v1_url,
            MODEL,
            transport="prime_vllm_generate",
            tokenizer=tok if local else None,
        ) as c:
            assert c.transport == "vllm-chat-tokens"
            return await tool_rollout(
                c, cache_salt="salt-A", priority=2, chat_template_kwargs={"x": 1}
            )

    turns, _ = run(go())
    check_tito_chain(turns)
    first = records(eng, "/v1/chat/completions")
    rest = records(eng, "/v1/chat/completions/tokens")
    assert len(first) == 1 and len(rest) == 7
    assert first[0]["body"]["return_token_ids"] is True and first[0]["body"]["logprobs"] is True
    for turn, rec in zip(turns, first + rest, strict=True):
        body = rec["body"]
        assert rec["status"] == 200 and rec["prompt_ids"] == list(turn.prompt_ids)
        assert rec["completion_ids"] == list(turn.completion_ids)
        assert body["cache_salt"] == "salt-A" and body["priority"] == 2
        assert body["chat_template_kwargs"] == {"x": 1}
        assert "max_completion_tokens" in body and "max_tokens" not in body
    for turn, rec in zip(turns[1:], rest, strict=True):
        assert rec["body"]["tokens"] == list(turn.prompt_ids)
    # the server parsed the tool calls; the turns' messages are what the caller appended
    assert (
        all(t.tool_calls for t in turns[:7])
        and turns[7].content == "Final answer after 7 tool calls."
    )
    assert [t.finish_reason for t in turns] == ["tool_calls"] * 7 + ["stop"]
    tokenize = records(eng, "/tokenize")
    assert len(tokenize) == (0 if local else 14)  # two calls per bridged turn (docs/wire.md E.2)
    if not local:
        assert all(r["status"] == 200 for r in tokenize)
        assert tokenize[0]["body"]["chat_template_kwargs"] == {"x": 1}
        assert tokenize[1]["body"]["add_generation_prompt"] is False


@pytest.mark.parametrize("target", ["vllm", "openai"])
def test_chat_transport_8_turns_mito(eng: EngineProcess, target: str) -> None:
    eng.script(mode="tool_agent", tool_calls=7)

    async def go() -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
        async with fasttito.Client(eng.v1_url, MODEL, transport="chat", chat_target=target) as c:  # type: ignore[arg-type]
            return await tool_rollout(c, cache_salt="salt-C")

    turns, _ = run(go())
    assert all(t.mode == "mito" and t.fallback_reason == "chat_transport" for t in turns)
    recs = records(eng, "/v1/chat/completions")
    assert len(recs) == 8
    for k, (turn, rec) in enumerate(zip(turns, recs, strict=True)):
        body = rec["body"]
        assert len(body["messages"]) == 2 + 2 * k  # the whole conversation every turn
        if target == "vllm":
            assert body["cache_salt"] == "salt-C" and body["return_token_ids"] is True
            assert list(turn.completion_ids) == rec["completion_ids"]
            assert list(turn.prompt_ids) == rec["prompt_ids"]
            assert len(turn.completion_logprobs) == len(turn.completion_ids)
        else:
            assert "return_token_ids" not in body and "cache_salt" not in body
    assert turns[-1].content == "Final answer after 7 tool calls."
    assert fasttito.metrics()["tito"] == 0


def test_auto_picks_generate_with_tokenizer_else_chat_tokens(
    eng: EngineProcess, tok: fasttito.Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    async def go(tokenizer: Any) -> str:
        async with fasttito.Client(eng.v1_url, MODEL, tokenizer=tokenizer) as c:
            return c.transport

    with caplog.at_level(logging.INFO, logger="fasttito"):
        assert run(go(tok)) == "vllm-generate"
        assert run(go(None)) == "vllm-chat-tokens"
    assert any("transport vllm-generate" in r.getMessage() for r in caplog.records)


def test_httpx_client_seam(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    import httpx

    eng.script(mode="tool_agent", tool_calls=2)

    async def go() -> list[fasttito.Turn]:
        async with httpx.AsyncClient() as hc:
            async with fasttito.Client(
                eng.v1_url,
                MODEL,
                transport="vllm-generate",
                tokenizer=tok,
                http_client=hc,
                api_key=SECRET,
            ) as c:
                turns, _ = await tool_rollout(c, n_turns=3)
            assert not hc.is_closed  # the caller's client stays open
            return turns

    turns = run(go())
    check_tito_chain(turns)
    assert all(r["authorization_present"] for r in records(eng, "/inference/v1/generate"))


# --------------------------------------------------------------------------- error paths


def client_for(eng: EngineProcess, tok: Any, **kw: Any) -> fasttito.Client:
    kw.setdefault("transport", "vllm-generate")
    kw.setdefault("backoff", 0.01)
    return fasttito.Client(eng.v1_url, MODEL, tokenizer=tok, **kw)


async def one_turn(client: fasttito.Client, **gen: Any) -> fasttito.Turn:
    async with client:
        return await client.rollout().generate([{"role": "user", "content": "hi"}], **gen)


def test_4xx_is_not_retried_and_redacted(
    eng: EngineProcess, tok: fasttito.Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    eng.script(mode="text")
    eng.faults(
        {
            "mode": "status",
            "status": 400,
            "body": f"bad request, key was {SECRET} / {HEADER_SECRET}",
            "path": "/inference/v1/generate",
        }
    )
    c = client_for(eng, tok, api_key=SECRET, headers={"X-Tenant": HEADER_SECRET}, max_retries=3)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(fasttito.ServerError) as ei:
            run(one_turn(c))
    err = ei.value
    assert err.status_code == 400 and err.transport == "vllm-generate"
    assert "bad request" in err.body and "<redacted>" in err.body
    assert len(records(eng, "/inference/v1/generate")) == 1  # not retried
    rec = records(eng, "/inference/v1/generate")[0]
    assert rec["authorization_present"] and rec["headers"].get("x-tenant") is not None
    for text in (str(err), err.body, repr(err), *(r.getMessage() for r in caplog.records)):
        assert SECRET not in text and HEADER_SECRET not in text


@pytest.mark.parametrize("mode", ["http_502", "http_503", "drop", "reset"])
def test_5xx_and_connection_faults_are_retried(
    eng: EngineProcess, tok: fasttito.Tokenizer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    eng.script(mode="text")
    eng.faults({"mode": mode, "count": 2, "path": "/inference/v1/generate"})
    with caplog.at_level(logging.INFO, logger="fasttito"):
        turn = run(one_turn(client_for(eng, tok, max_retries=2, api_key=SECRET)))
    assert turn.content == "Hello from the test engine."
    assert len(records(eng, "/inference/v1/generate")) == 3
    assert sum("retry" in r.getMessage() for r in caplog.records) == 2
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_5xx_past_max_retries_is_server_error(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.faults({"mode": "http_503", "count": 5, "path": "/inference/v1/generate"})
    with pytest.raises(fasttito.ServerError) as ei:
        run(one_turn(client_for(eng, tok, max_retries=1)))
    assert ei.value.status_code == 503 and "1 retries" in str(ei.value)
    assert len(records(eng, "/inference/v1/generate")) == 2


def test_500_is_not_retried(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.faults({"mode": "http_500", "count": 1, "path": "/inference/v1/generate"})
    with pytest.raises(fasttito.ServerError) as ei:
        run(one_turn(client_for(eng, tok, max_retries=2)))
    assert ei.value.status_code == 500
    assert len(records(eng, "/inference/v1/generate")) == 1


def test_timeout_then_retry_then_give_up(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="text")
    eng.faults({"mode": "delay", "seconds": 1.5, "count": 1, "path": "/inference/v1/generate"})
    turn = run(one_turn(client_for(eng, tok, timeout=0.5, max_retries=1)))
    assert turn.content == "Hello from the test engine."
    eng.reset()
    eng.script(mode="text")
    eng.faults({"mode": "delay", "seconds": 1.5, "count": 2, "path": "/inference/v1/generate"})
    with pytest.raises(fasttito.RequestTimeoutError) as ei:
        run(one_turn(client_for(eng, tok, timeout=0.5, max_retries=1)))
    assert isinstance(ei.value, TimeoutError) and isinstance(ei.value, fasttito.TransportError)
    assert "timeout=0.5s" in str(ei.value)


def test_connection_refused(tok: fasttito.Tokenizer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = fasttito.Client(
        f"http://127.0.0.1:{port}/v1",
        MODEL,
        transport="vllm-generate",
        tokenizer=tok,
        max_retries=2,
        backoff=0.01,
        api_key=SECRET,
    )
    with pytest.raises(fasttito.TransportError) as ei:
        run(one_turn(c))
    assert isinstance(ei.value, ConnectionError)
    assert "2 retries" in str(ei.value) and SECRET not in str(ei.value)


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("malformed_json", None),
        ("truncated_json", None),
        ("missing_token_ids", "token_ids"),
        ("short_logprobs", "logprob"),
        ("oov_token_id", "outside the vocabulary"),
    ],
)
@pytest.mark.parametrize("transport", ["vllm-generate", "vllm-chat-tokens"])
def test_malformed_responses_are_parse_errors(
    eng: EngineProcess, tok: fasttito.Tokenizer, mode: str, match: str, transport: str
) -> None:
    eng.script(mode="text")
    path = "/inference/v1/generate" if transport == "vllm-generate" else "/v1/chat/completions"
    eng.faults({"mode": mode, "count": 1, "path": path})
    c = client_for(eng, tok, transport=transport, max_retries=2)
    with pytest.raises(fasttito.ResponseParseError, match=match) as ei:
        run(one_turn(c))
    assert isinstance(ei.value, ValueError)
    assert len(records(eng, path)) == 1  # a malformed answer is not retried


def test_null_logprob_is_kept_as_nan(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="text")
    eng.faults({"mode": "null_logprob", "count": 1, "path": "/v1/chat/completions"})
    turn = run(one_turn(client_for(eng, tok, transport="vllm-chat-tokens")))
    assert turn.null_logprobs == 1
    assert len(turn.completion_logprobs) == len(turn.completion_ids)
    assert sum(math.isnan(x) for x in turn.completion_logprobs) == 1


def test_response_too_large(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="text")
    with pytest.raises(fasttito.ResponseTooLargeError):
        run(one_turn(client_for(eng, tok, max_body_bytes=200)))


def test_overlong_prompt_is_not_sent(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    long = "word " * 33000  # > max_model_len 32768 tokens

    async def go() -> None:
        async with client_for(eng, tok) as c:
            await c.rollout().generate([{"role": "user", "content": long}])

    with pytest.raises(fasttito.OverlongPromptError) as ei:
        run(go())
    assert ei.value.max_model_len == 32768 and ei.value.prompt_tokens > 32768
    assert records(eng, "/inference/v1/generate") == []


def test_truncated_turn_then_mito(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="tool_agent", tool_calls=3)

    async def go() -> list[fasttito.Turn]:
        async with client_for(eng, tok, transport="vllm-chat-tokens") as c:
            r = c.rollout()
            msgs: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
            t1 = await r.generate(msgs, tools=TOOLS, max_tokens=5)
            msgs += [t1.message(), {"role": "user", "content": "go on"}]
            t2 = await r.generate(msgs, tools=TOOLS)
            return [t1, t2]

    t1, t2 = run(go())
    assert t1.is_truncated and t1.finish_reason == "length" and len(t1.completion_ids) == 5
    assert t2.mode == "mito" and t2.fallback_reason == "previous_turn_truncated"


# --------------------------------------------------------------------------- Dynamo


@pytest.fixture(scope="module")
def dyn(require_dynamo: None) -> Iterator[Any]:
    from fasttito.testing.dynamo_launch import start_dynamo

    with start_dynamo(VENDORED_MODEL_DIR, DYN_SERVED, timeout=90) as h:
        yield h


@pytest.fixture
def dyn_clean(dyn: Any) -> Iterator[Any]:
    dyn.clear_control()
    yield dyn
    dyn.clear_control()


def test_dynamo_8_turn_tool_rollout(dyn_clean: Any, tok: fasttito.Tokenizer) -> None:
    dyn = dyn_clean
    dyn.set_control(max_tool_calls=7, echo_request=True)
    poster = RecordingPoster()

    async def go() -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
        async with fasttito.Client(
            dyn.openai_base_url, DYN_SERVED, tokenizer=tok, http_client=poster
        ) as c:
            assert c.transport == "dynamo-nvext"  # auto: /v1/models says owned_by nvidia
            return await tool_rollout(c, cache_salt="step-9", priority=5, max_tokens=300)

    turns, _ = run(go())
    check_tito_chain(turns)
    chat = [(b, r) for m, u, b, r in poster.log if u.endswith("/v1/chat/completions")]
    assert len(chat) == 8
    assert [r.status for *_, r in poster.log] == [200] * len(poster.log)  # never a 400
    for k, (turn, (body_bytes, resp)) in enumerate(zip(turns, chat, strict=True), start=1):
        assert resp.status == 200, f"turn {k}: Dynamo answered {resp.status}: {resp.body[:300]!r}"
        body = json.loads(body_bytes)
        # docs/wire.md C.1: placeholder message, ids in nvext, salt/priority in nvext, no tools
        assert body["messages"] == [{"role": "user", "content": ""}]
        assert body["nvext"]["token_data"] == list(turn.prompt_ids)
        assert body["nvext"]["cache_salt"] == "step-9"
        assert body["nvext"]["agent_hints"] == {"priority": 5}
        assert "engine_data" in body["nvext"]["extra_fields"]
        assert body["stop_token_ids"] == tok.stop_token_ids
        for key in ("tools", "priority", "cache_salt", "return_token_ids"):
            assert key not in body
        data = json.loads(resp.body)["nvext"]["engine_data"]
        assert data["prompt_token_ids"] == list(turn.prompt_ids)  # the engine saw the stitched ids
        assert data["completion_token_ids"] == list(turn.completion_ids)
        assert data["completion_logprobs"] == turn.completion_logprobs
        req = data["request"]
        assert req["routing"]["cache_salt"] == "step-9" and req["routing"]["priority"] == 5
        assert req["stop_conditions"]["max_tokens"] == 300
    assert turns[-1].content == "All done: the tools were called."
    # Dynamo 1.6.1 returns the raw text; fasttito decodes the tool calls from the ids
    assert [t.finish_reason for t in turns] == ["tool_calls"] * 7 + ["stop"]
    assert [json.loads(t.tool_calls[0]["function"]["arguments"]) for t in turns[:7]] == [
        {"step": k} for k in range(1, 8)
    ]
    # no route probing beyond /v1/models on Dynamo
    assert [u.rsplit("/", 2)[-2:] for _, u, _, _ in poster.log[:1]] == [["v1", "models"]]


def test_dynamo_retries_503_and_reports_4xx(dyn_clean: Any, tok: fasttito.Tokenizer) -> None:
    dyn = dyn_clean
    dyn.set_control(error="http:503", fail_next=1)

    async def go(**kw: Any) -> fasttito.Turn:
        async with fasttito.Client(
            dyn.openai_base_url, DYN_SERVED, transport="dynamo", tokenizer=tok, backoff=0.2, **kw
        ) as c:
            return await c.rollout().generate([{"role": "user", "content": "hi"}], tools=TOOLS)

    turn = run(go(max_retries=3))
    assert turn.completion_ids and turn.mode == "mito"
    dyn.set_control(error="invalid_argument", fail_next=1, error_message="nope")
    with pytest.raises(fasttito.ServerError) as ei:
        run(go(max_retries=3))
    assert ei.value.status_code == 400 and ei.value.transport == "dynamo-nvext"
    assert "nope" in ei.value.body


def test_dynamo_first_turn_as_messages(dyn_clean: Any, tok: fasttito.Tokenizer) -> None:
    """``dynamo_first_turn="messages"``: Dynamo renders turn 1 itself (its engine_data reports
    the prompt ids), then turn 2 is token-in on top of them."""
    dyn = dyn_clean
    dyn.set_control(max_tool_calls=3)
    poster = RecordingPoster()

    async def go() -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
        async with fasttito.Client(
            dyn.openai_base_url,
            DYN_SERVED,
            transport="dynamo_chat_nvext",
            tokenizer=tok,
            http_client=poster,
            dynamo_first_turn="messages",
        ) as c:
            return await tool_rollout(c, n_turns=3, cache_salt="s", priority=1)

    turns, _ = run(go())
    check_tito_chain(turns)
    bodies = [json.loads(b) for _, u, b, _ in poster.log if u.endswith("/chat/completions")]
    assert bodies[0]["messages"][1] == {"role": "user", "content": "Weather in Paris?"}
    assert bodies[0]["tools"] == TOOLS and "token_data" not in bodies[0]["nvext"]
    assert bodies[0]["nvext"]["cache_salt"] == "s" and "priority" not in bodies[0]
    assert all("tools" not in b and "token_data" in b["nvext"] for b in bodies[1:])
    # the ids Dynamo rendered for turn 1 equal fasttito's local render
    assert list(turns[0].prompt_ids) == tok.apply_chat_template(
        [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        tools=TOOLS,
        add_generation_prompt=True,
    )


def test_many_concurrent_rollouts_share_one_client(
    eng: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    eng.script(mode="tool_agent", tool_calls=2)

    async def go() -> list[list[fasttito.Turn]]:
        async with fasttito.Client(
            eng.v1_url, MODEL, transport="vllm-generate", tokenizer=tok
        ) as c:
            results = await asyncio.gather(*(tool_rollout(c, n_turns=3) for _ in range(48)))
        return [turns for turns, _ in results]

    all_turns = run(go())
    for turns in all_turns:
        assert [t.mode for t in turns] == ["mito", "tito", "tito"]
        assert [t.content for t in turns][-1] == "Final answer after 2 tool calls."
    recs = records(eng, "/inference/v1/generate")
    assert len(recs) == 48 * 3 and all(r["status"] == 200 for r in recs)
    assert len(records(eng, "/v1/models")) == 1  # max_model_len is read once per Client
    sent = sorted(tuple(r["prompt_ids"]) for r in recs)
    got = sorted(tuple(t.prompt_ids) for turns in all_turns for t in turns)
    assert sent == got


def test_remote_tokenize_failure_falls_back_to_messages(eng: EngineProcess) -> None:
    eng.script(mode="tool_agent", tool_calls=3)
    eng.faults({"mode": "status", "status": 400, "count": 1, "path": "/tokenize"})

    async def go() -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
        async with fasttito.Client(eng.v1_url, MODEL, transport="vllm-chat-tokens") as c:
            return await tool_rollout(c, n_turns=3)

    turns, _ = run(go())
    assert [t.mode for t in turns] == ["mito", "mito", "tito"]
    assert turns[1].fallback_reason == "tokenization_failed"
    assert fasttito.metrics()["fallback.tokenization_failed"] == 1
    assert [r["path"] for r in eng.requests() if r["path"].startswith("/v1/chat")] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/chat/completions/tokens",
    ]


def test_auto_falls_back_to_chat_without_token_routes() -> None:
    with start_engine(
        VENDORED_MODEL_DIR,
        served_model_name=MODEL,
        extra_args=[
            "--disable-route",
            "/inference/v1/generate",
            "--disable-route",
            "/v1/chat/completions/tokens",
        ],
    ) as e:
        e.script(mode="text")

        async def go() -> tuple[str, fasttito.Turn]:
            async with fasttito.Client(e.v1_url, MODEL, tokenizer=VENDORED_MODEL_DIR) as c:
                turn = await c.rollout().generate(
                    [{"role": "user", "content": "hi"}], cache_salt="z"
                )
                return c.transport, turn

        name, turn = run(go())
        assert name == "chat"
        assert turn.content == "Hello from the test engine." and turn.mode == "mito"
        (rec,) = [r for r in e.requests() if r["path"] == "/v1/chat/completions"]
        assert (
            rec["body"]["cache_salt"] == "z" and list(turn.completion_ids) == rec["completion_ids"]
        )


def test_httpx_client_class_is_owned(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    import httpx

    eng.script(mode="text")

    async def go() -> fasttito.Turn:
        c = client_for(eng, tok, http_client=httpx.AsyncClient)
        turn = await one_turn(c)
        assert c._poster._client.is_closed  # type: ignore[attr-defined]
        return turn

    assert run(go()).content == "Hello from the test engine."


def test_httpx_errors_are_typed(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    import httpx

    eng.script(mode="text")
    eng.faults({"mode": "delay", "seconds": 1.5, "count": 1, "path": "/inference/v1/generate"})

    async def go() -> None:
        async with httpx.AsyncClient() as hc:
            await one_turn(client_for(eng, tok, http_client=hc, timeout=0.5, max_retries=0))

    with pytest.raises(fasttito.RequestTimeoutError):
        run(go())
    eng.faults({"mode": "drop", "count": 3, "path": "/inference/v1/generate"})
    with pytest.raises(fasttito.TransportError):
        run(go())


def test_dynamo_stripped_stop_token_falls_back(dyn_clean: Any, tok: fasttito.Tokenizer) -> None:
    """Dynamo's SGLang backend once dropped the stop token (dyn #14302): the next turn cannot
    stitch on it and goes MITO, counted and explained."""
    dyn = dyn_clean
    dyn.set_control(strip_stop=True)

    async def go() -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
        async with fasttito.Client(
            dyn.openai_base_url, DYN_SERVED, transport="dynamo", tokenizer=tok
        ) as c:
            return await tool_rollout(c, n_turns=2)

    turns, _ = run(go())
    assert turns[0].completion_ids[-1] not in tok.stop_token_ids
    assert turns[1].mode == "mito" and turns[1].fallback_reason == "stop_token_missing"


def test_auto_on_dynamo_without_tokenizer_is_chat(dyn_clean: Any) -> None:
    dyn = dyn_clean
    poster = RecordingPoster()

    async def go() -> tuple[str, fasttito.Turn]:
        async with fasttito.Client(dyn.openai_base_url, DYN_SERVED, http_client=poster) as c:
            turn = await c.rollout().generate(
                [{"role": "user", "content": "hi"}], tools=TOOLS, cache_salt="q", priority=2
            )
            return c.transport, turn

    name, turn = run(go())
    assert name == "chat" and turn.mode == "mito"
    assert turn.completion_ids and len(turn.completion_logprobs) == len(turn.completion_ids)
    assert [r.status for *_, r in poster.log] == [200, 200]
    body = json.loads(poster.log[-1][2])
    assert body["nvext"]["cache_salt"] == "q" and body["nvext"]["agent_hints"] == {"priority": 2}
    assert "priority" not in body and "return_token_ids" not in body and body["tools"] == TOOLS
