"""The ``chat`` transport with ``chat_target="openai"``: any OpenAI-compatible server's answer,
parsed in Rust by the ``chat`` wire (``_core.parse_turn``, docs/wire.md A.4) since issue 16
removed the Python parser the target had (``chat.py::_parse_openai``).

The bodies are ``rust/tests/fixtures``: ``vllm_0_32_chat_openai_*`` were recorded from the real
vLLM 0.32 CPU build serving SmolLM2-135M-Instruct (``--enable-auto-tool-choice
--tool-call-parser hermes``) asked without ``return_token_ids``, as the openai target asks;
``openai_shape_*`` are written by hand in the shapes the providers document (OpenAI's chat
completion object with ``usage.*_tokens_details`` and text-labelled logprobs; a tool call with
an ``extra_content`` key as Gemini's OpenAI compatibility layer sends its thought signatures).
Each is checked against the removed parser, kept below as the reference, and served to a real
``Client`` by a one-route HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fasttito
import pytest
from fasttito import _core
from fasttito.errors import ResponseParseError
from fasttito.tokens import TokenIds
from fasttito.transports._base import Turn

FIXTURES = Path(__file__).resolve().parent.parent / "rust" / "tests" / "fixtures"
MODEL = "m"
USER = [{"role": "user", "content": "Weather in Paris?"}]
OPENAI_BODIES = [
    "vllm_0_32_chat_openai_logprobs.json",
    "vllm_0_32_chat_openai_tool_call.json",
    "openai_shape_text_logprobs.json",
    "openai_shape_tool_call_extra_keys.json",
]
#: every OpenAI-shaped body of the fixtures (vLLM, Dynamo answers read as a plain server's)
CHAT_SHAPED = [
    *OPENAI_BODIES,
    "wire_a3_vllm_chat.json",
    "engine_vllm_chat_text.json",
    "engine_vllm_chat_tokens.json",
    "engine_vllm_chat_tool_call.json",
    "dynamo_1_6_1_length.json",
    "dynamo_1_6_1_mito_tools.json",
    "dynamo_1_6_1_nvext_fields.json",
    "dynamo_1_6_1_observed.json",
    "wire_c2_dynamo.json",
]


def previous_parse(raw: bytes) -> dict[str, Any]:
    """The Python parser of the openai target before issue 16 (``chat.py::_parse_openai``,
    unchanged but for its error handling, which the tests below pin separately): the reference
    the Rust parser must match on every well-formed answer."""
    doc = json.loads(raw)
    choice = doc["choices"][0]
    msg = choice.get("message") or {}
    ids = choice.get("token_ids")
    logprobs = None
    content_lp = (
        (choice.get("logprobs") or {}).get("content")
        if isinstance(choice.get("logprobs"), dict)
        else None
    )
    if isinstance(content_lp, list):
        logprobs = [
            float(e["logprob"])
            if isinstance(e, dict) and isinstance(e.get("logprob"), (int, float))
            else math.nan
            for e in content_lp
        ]
    prompt = doc.get("prompt_token_ids")
    tool_calls = [tc for tc in msg.get("tool_calls") or [] if isinstance(tc, dict)]
    finish = choice.get("finish_reason")
    if tool_calls and finish == "stop":
        finish = "tool_calls"
    reasoning = msg.get("reasoning_content")
    if reasoning is None:
        reasoning = msg.get("reasoning")
    return {
        "prompt_ids": TokenIds(prompt) if isinstance(prompt, list) else None,
        "completion_ids": TokenIds(ids or []),
        "completion_logprobs": logprobs,
        "content": msg.get("content"),
        "reasoning_content": reasoning,
        "tool_calls": tool_calls,
        "finish_reason": finish,
        "stop_reason": choice.get("stop_reason"),
        "usage": doc.get("usage"),
        "response_id": doc.get("id"),
        "routed_experts": None,
        "null_logprobs": sum(1 for v in logprobs or () if math.isnan(v)),
    }


def plain(value: Any) -> Any:
    """``value`` with NaN made comparable and TokenIds as lists."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, TokenIds):
        return list(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def rust_turn(raw: bytes) -> Turn:
    return Turn(
        _core.parse_turn(
            raw, "chat", transport="chat", turn=1, top_logprobs=None, max_body_bytes=1 << 30
        )
    )


@pytest.mark.parametrize("name", CHAT_SHAPED)
def test_the_rust_parser_reads_every_answer_as_the_previous_python_one(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    want = previous_parse(raw)
    turn = rust_turn(raw)
    for field, value in want.items():
        if field == "routed_experts":
            continue  # not read before; now passed through as on the vllm target
        assert plain(getattr(turn, field)) == plain(value), f"{name}: {field}"
    before = Turn(mode="mito", fallback_reason="chat_transport", transport="chat", turn=1, **want)
    assert plain(turn.message()) == plain(before.message()), name


def test_logprobs_without_ids_reach_the_turn() -> None:
    """vLLM asked as a plain OpenAI server: token strings, no ids. The logprobs are kept, one per
    generated token, and the ids stay empty (the server sent none)."""
    raw = (FIXTURES / "vllm_0_32_chat_openai_logprobs.json").read_bytes()
    entries = json.loads(raw)["choices"][0]["logprobs"]["content"]
    turn = rust_turn(raw)
    assert list(turn.completion_ids) == [] and turn.prompt_ids is None
    assert turn.completion_logprobs == [e["logprob"] for e in entries]
    assert turn.finish_reason == "length" and turn.null_logprobs == 0
    p = fasttito.parse_response(raw, "chat")
    assert p.completion_logprobs == turn.completion_logprobs


def test_usage_and_tool_calls_are_kept_as_sent() -> None:
    raw = (FIXTURES / "openai_shape_text_logprobs.json").read_bytes()
    usage = json.loads(raw)["usage"]
    turn = rust_turn(raw)
    assert turn.usage == usage and "completion_tokens_details" in turn.usage
    assert turn.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"]
    assert fasttito.parse_response(raw, "chat").usage == usage
    raw = (FIXTURES / "openai_shape_tool_call_extra_keys.json").read_bytes()
    calls = json.loads(raw)["choices"][0]["message"]["tool_calls"]
    turn = rust_turn(raw)
    assert turn.tool_calls == calls and turn.message()["tool_calls"] == calls
    assert turn.tool_calls[0]["extra_content"]["google"]["thought_signature"]
    assert turn.message()["tool_calls"][0] is not turn.tool_calls[0]  # a copy, as before
    assert fasttito.parse_response(raw, "chat").tool_calls == calls


def chat_body(choice: dict[str, Any], **top: Any) -> bytes:
    return json.dumps(
        {"id": "c", "choices": [{"message": {"content": "a"}, **choice}], **top}
    ).encode()


# Malformed answers the previous parser passed through (or dropped, or crashed on with a bare
# AttributeError/TypeError): each is now a ResponseParseError naming the path.
MALFORMED = [
    (chat_body({"message": {"content": 5}}), "choices[0].message.content"),
    (chat_body({"message": {"reasoning": ["r"]}}), "choices[0].message.reasoning"),
    (chat_body({"finish_reason": 1}), "choices[0].finish_reason"),
    (chat_body({"message": "x"}), "choices[0].message"),
    (chat_body({"message": ""}), "choices[0].message"),
    (chat_body({"message": {"tool_calls": 5}}), "choices[0].message.tool_calls"),
    (chat_body({"message": {"tool_calls": {"a": 1}}}), "choices[0].message.tool_calls"),
    (chat_body({"message": {"tool_calls": ["junk"]}}), "tool_calls[0]"),
    (chat_body({"message": {"tool_calls": [{"function": {"arguments": "{}"}}]}}), "function.name"),
    (chat_body({"logprobs": {"content": [{"logprob": "x"}]}}), "logprobs.content[0].logprob"),
    (chat_body({"logprobs": {"content": [{"logprob": True}]}}), "logprobs.content[0].logprob"),
    (chat_body({"logprobs": [1, 2]}), "choices[0].logprobs"),
    (chat_body({"stop_reason": [1]}), "choices[0].stop_reason"),
    (chat_body({}, id=7), "`id`"),
    (chat_body({}, usage="x"), "`usage`"),
    (chat_body({}, usage={"prompt_tokens": -1}), "`usage`"),
    (chat_body({}, prompt_token_ids="x"), "prompt_token_ids"),
    (
        b'{"choices": [{"message": {}, "logprobs": {"content": [{"logprob": NaN}]}}]}',
        "not valid JSON",
    ),
]


@pytest.mark.parametrize(("body", "path"), MALFORMED)
def test_malformed_answers_are_typed_errors(body: bytes, path: str) -> None:
    with pytest.raises(ResponseParseError, match=re.escape(path)):
        rust_turn(body)


@asynccontextmanager
async def answering(body: bytes) -> AsyncIterator[str]:
    """An HTTP/1.1 server on 127.0.0.1 answering every request with ``body``; yields its ``/v1``
    URL and stops on exit."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            seen.append(await reader.readexactly(length))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
            )
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        await server.wait_closed()


def generate(body: bytes, **kw: Any) -> fasttito.Turn:
    async def go() -> fasttito.Turn:
        async with answering(body) as url:
            async with fasttito.Client(
                url,
                MODEL,
                transport="chat",
                chat_target="openai",
                check_prompt_length=False,
                max_retries=0,
                **kw,
            ) as c:
                return await c.rollout().generate(USER)

    return asyncio.run(go())


def test_the_openai_target_returns_the_rust_parse() -> None:
    raw = (FIXTURES / "vllm_0_32_chat_openai_tool_call.json").read_bytes()
    turn = generate(raw)
    doc = json.loads(raw)
    assert (turn.mode, turn.fallback_reason, turn.transport, turn.turn) == (
        "mito",
        "chat_transport",
        "chat",
        1,
    )
    assert turn.tool_calls == doc["choices"][0]["message"]["tool_calls"]
    assert turn.finish_reason == "tool_calls" and turn.usage == doc["usage"]
    assert len(turn.completion_logprobs or []) == len(doc["choices"][0]["logprobs"]["content"])
    assert turn.tokens_reused is None and turn.bridge_tokens is None


def test_the_openai_target_refuses_a_malformed_answer_and_honours_the_depth_limit() -> None:
    with pytest.raises(ResponseParseError, match=re.escape("choices[0].message.content")):
        generate(chat_body({"message": {"content": {"text": "a"}}}))
    deep = chat_body({"message": {"content": "a", "x": [[[[[[[[1]]]]]]]]}})
    assert generate(deep).content == "a"
    with pytest.raises(ResponseParseError, match="max_depth"):
        generate(deep, max_json_depth=8)
