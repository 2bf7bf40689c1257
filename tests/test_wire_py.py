"""fasttito.parse_response and the request writers, from Python (the Rust rules themselves are
tested in rust/tests/wire.rs against the same fixtures)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import fasttito
import pytest
from fasttito import ResponseParseError, TokenIds, _core

FIXTURES = Path(__file__).resolve().parents[1] / "rust" / "tests" / "fixtures"


def test_dynamo_engine_data_wins() -> None:
    body = (FIXTURES / "wire_c2_dynamo.json").read_bytes()
    parsed = fasttito.parse_response(body, "dynamo")
    data = json.loads(body)["nvext"]["engine_data"]
    assert isinstance(parsed.completion_ids, TokenIds)
    assert parsed.completion_ids == data["completion_token_ids"]
    assert parsed.completion_logprobs == data["completion_logprobs"]
    assert parsed.prompt_ids == data["prompt_token_ids"]
    assert (
        parsed.routed_experts is not None and json.loads(parsed.routed_experts)["dtype"] == "uint8"
    )


def test_vllm_chat_and_generate() -> None:
    chat = fasttito.parse_response((FIXTURES / "wire_a3_vllm_chat.json").read_bytes(), "vllm-chat")
    assert chat.completion_ids == [11613, 3542, 13, 151645] and chat.finish_reason == "stop"
    assert len(chat.completion_logprobs or []) == len(chat.completion_ids)
    gen = fasttito.parse_response(
        (FIXTURES / "wire_b2_vllm_generate.json").read_bytes(), "vllm-generate"
    )
    assert gen.completion_ids == [7, 8] and gen.completion_logprobs == [-0.1, -0.2]


def test_null_logprob_is_kept_as_nan_and_counted() -> None:
    body = json.dumps(
        {
            "choices": [
                {
                    "token_ids": [1, 2],
                    "finish_reason": "stop",
                    "message": {"content": "x"},
                    "logprobs": {"content": [{"logprob": -0.5}, {"logprob": None}]},
                }
            ]
        }
    ).encode()
    parsed = fasttito.parse_response(body, "vllm-chat")
    assert parsed.null_logprobs == 1 and math.isnan((parsed.completion_logprobs or [])[1])


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "JSON"),
        (b'{"choices": [{"token_ids": [1, 2], "logprobs": {"content": [{"logprob": -1}]}}]}', "1"),
        (b'{"choices": [{"message": {"content": "x"}}]}', "token_ids"),
    ],
)
def test_malformed_responses_are_typed(body: bytes, match: str) -> None:
    with pytest.raises(ResponseParseError, match=match):
        fasttito.parse_response(body, "vllm-chat")


def test_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(ResponseParseError):
        fasttito.parse_response(b"{" + b" " * 1000 + b"}", "dynamo", max_body_bytes=100)


def chat_completion(choice: dict[str, object], **top: object) -> bytes:
    """A plain OpenAI chat completion with ``choice`` as ``choices[0]``."""
    return json.dumps(
        {"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice], **top}
    ).encode()


def test_chat_wire_reads_a_strict_openai_answer() -> None:
    p = _core.parse_response(
        chat_completion(
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi"},
                "finish_reason": "stop",
            },
            usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        ),
        "chat",
    )
    assert list(p.completion_ids) == [] and p.completion_logprobs is None and p.prompt_ids is None
    assert (p.content, p.reasoning_content, p.finish_reason) == ("hi", None, "stop")
    assert p.usage == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    assert p.response_id == "chatcmpl-1" and p.stop_reason is None and p.tool_calls == []
    assert p.routed_experts is None and p.null_logprobs == 0


def test_chat_wire_ids_and_logprobs_where_sent() -> None:
    entries: list[object] = [
        {"logprob": -0.5},
        None,
        {"token": "t", "logprob": None},
        {"logprob": -2},
    ]
    p = _core.parse_response(
        chat_completion(
            {
                "message": {"content": "ab"},
                "token_ids": [5, 6, 7, 8],
                "logprobs": {"content": entries},
            },
            prompt_token_ids=[1, 2],
        ),
        "chat",
    )
    assert p.completion_ids == [5, 6, 7, 8] and p.prompt_ids == [1, 2]
    lp = p.completion_logprobs or []
    assert lp[0] == -0.5 and lp[3] == -2.0 and all(math.isnan(v) for v in lp[1:3])
    assert p.null_logprobs == 2
    # without token_ids (a plain OpenAI server) the logprobs are kept, one per generated token
    p = _core.parse_response(
        chat_completion({"message": {"content": "a"}, "logprobs": {"content": [{"logprob": -1}]}}),
        "chat",
    )
    assert p.completion_logprobs == [-1.0] and list(p.completion_ids) == []
    p = _core.parse_response(chat_completion({"token_ids": [1]}, prompt_token_ids=None), "chat")
    assert p.prompt_ids is None


@pytest.mark.parametrize(
    ("choice", "top", "match"),
    [
        ({"token_ids": [-1]}, {}, "token_ids"),
        ({"token_ids": [1.5]}, {}, "token_ids"),
        ({"token_ids": [2**32]}, {}, "token_ids"),
        ({"token_ids": "1"}, {}, "token_ids"),
        ({"token_ids": [1, 2], "logprobs": {"content": [{"logprob": -1}]}}, {}, "1 logprobs"),
        ({"token_ids": [1]}, {"prompt_token_ids": [1, -2]}, "prompt_token_ids"),
        ({"token_ids": [1]}, {"prompt_token_ids": "x"}, "prompt_token_ids"),
        ({"message": {"tool_calls": [{"function": {"arguments": "{}"}}]}}, {}, "function.name"),
        ({"message": {"tool_calls": ["junk"]}}, {}, "tool_calls"),
        ({"logprobs": {"content": [{"logprob": "x"}]}}, {}, "logprob"),
        ({"stop_reason": [1]}, {}, "stop_reason"),
        ({}, {"usage": {"prompt_tokens": "x"}}, "usage"),
        ({}, {"id": 7}, "id"),
    ],
)
def test_chat_wire_refuses_malformed_values(
    choice: dict[str, object], top: dict[str, object], match: str
) -> None:
    with pytest.raises(ResponseParseError, match=match):
        _core.parse_response(chat_completion(choice, **top), "chat")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"choices": []}',
        b'{"choices": [5]}',
        b'{"choices": {}}',
        b'{"choices": [[]]}',
    ],
)
def test_chat_wire_without_a_first_choice(body: bytes) -> None:
    with pytest.raises(ResponseParseError):
        _core.parse_response(body, "chat")


def test_chat_wire_tool_calls_reasoning_and_stop_reason() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    extra = {"index": 1, "function": {"name": "g", "arguments": {"b": 2}}, "extra_content": {}}
    p = _core.parse_response(
        chat_completion(
            {
                "finish_reason": "stop",
                "stop_reason": 151645,
                "message": {"content": None, "reasoning": "r", "tool_calls": [call, extra]},
            }
        ),
        "chat",
    )
    # the tool calls as sent, keys fasttito does not model included
    assert p.tool_calls == [call, extra] and p.finish_reason == "tool_calls"
    assert p.reasoning_content == "r" and p.stop_reason == 151645 and p.content is None
    p = _core.parse_response(
        chat_completion(
            {
                "finish_reason": "length",
                "stop_reason": "</s>",
                "message": {"reasoning_content": "a", "reasoning": "b", "tool_calls": [call]},
            }
        ),
        "chat",
    )
    assert p.finish_reason == "length" and p.reasoning_content == "a" and p.stop_reason == "</s>"


def test_request_bodies() -> None:
    ids = TokenIds([1, 2, 3])
    dyn = json.loads(
        _core.request_body(
            "dynamo",
            "m",
            token_ids=ids,
            sampling={"temperature": 1.0, "priority": 4},
            max_tokens=8,
            stop_token_ids=[99],
            cache_salt="ckpt-1",
            priority=5,
        )
    )
    assert dyn["nvext"]["token_data"] == [1, 2, 3] and dyn["nvext"]["cache_salt"] == "ckpt-1"
    assert (
        dyn["nvext"]["agent_hints"] == {"priority": 5}
        and "priority" not in dyn
        and "cache_salt" not in dyn
    )
    assert dyn["messages"] == [{"role": "user", "content": ""}] and "tools" not in dyn
    gen = json.loads(
        _core.request_body(
            "vllm-generate",
            "m",
            token_ids=[4, 5],
            max_tokens=8,
            stop_token_ids=[99],
            cache_salt="s",
        )
    )
    assert (
        gen["token_ids"] == [4, 5]
        and gen["cache_salt"] == "s"
        and gen["sampling_params"]["stop_token_ids"] == [99]
    )
    tok = json.loads(
        _core.request_body(
            "chat-tokens",
            "m",
            token_ids=[6],
            messages=[{"role": "user", "content": "x"}],
            max_tokens=8,
        )
    )
    assert (
        tok["tokens"] == [6]
        and tok["return_token_ids"] is True
        and tok["max_completion_tokens"] == 8
    )
    with pytest.raises(ValueError, match="unknown request kind"):
        _core.request_body("nope", "m")


def test_decode_completion_recovers_the_message_the_template_renders_back() -> None:
    tok = fasttito.Tokenizer.from_dir(Path(__file__).resolve().parents[1] / "models" / "qwen2.5")
    conversation = [{"role": "user", "content": "Weather in Paris?"}]
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    }
    prefix = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template([*conversation, call], tokenize=False)
    rest = full[len(prefix) :]
    ids = tok.encode(rest[: rest.index("<|im_end|>") + len("<|im_end|>")])
    turn = tok.decode_completion(ids)
    assert turn["family"] == "hermes" and turn["finish_reason_hint"] == "tool_calls"
    assert turn["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tok.apply_chat_template([*conversation, turn["message"]], tokenize=False) == full
