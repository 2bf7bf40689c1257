"""The local vLLM-compatible test engine (fasttito.testing.vllm_engine), tested on its own.

Plain urllib / http.client clients only (the engine renders with transformers). The oracle is
transformers: the 5-turn tool-agent loops prove that the engine's completions are template-exact
(previous prompt ids + previous completion ids + bridge == a full re-render).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fasttito.testing.launch import EngineProcess, start_engine, stop_engine  # noqa: E402

REPO = TESTS_DIR.parent
VENDORED = REPO / "models" / "qwen2.5"
SHARED = Path(os.environ.get("FASTTITO_MODELS") or REPO / "models")
KEY = "sk-engine-test-secret"
NAME = "test-model"
AUTH = {"Authorization": f"Bearer {KEY}"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
LLAMA_KW = {"date_string": "26 Jul 2024"}

_tokenizers: dict[Path, Any] = {}


def hf(folder: Path) -> Any:
    if folder not in _tokenizers:
        import transformers

        transformers.logging.set_verbosity_error()
        _tokenizers[folder] = transformers.AutoTokenizer.from_pretrained(str(folder))
    return _tokenizers[folder]


def render_ids(
    tok: Any, messages: list[Any], tools: Any, gen: bool, ctk: dict[str, Any]
) -> list[int]:
    msgs = json.loads(json.dumps(messages))
    for m in msgs:  # as the engine (and vLLM) do: tool-call arguments as objects
        for tc in m.get("tool_calls") or []:
            if isinstance(tc["function"].get("arguments"), str):
                tc["function"]["arguments"] = json.loads(tc["function"]["arguments"] or "{}")
    out = tok.apply_chat_template(
        msgs, tools=tools, add_generation_prompt=gen, tokenize=True, **ctk
    )
    return list(out if isinstance(out, list) else out["input_ids"])


def bridge_ids(
    tok: Any, prev: list[int], env: list[dict[str, Any]], tools: Any, ctk: dict[str, Any]
) -> list[int]:
    """docs/wire.md E.2: the dummy-assistant bridge, with the gap after the stop token."""
    call_ids = []
    for m in env:
        if m["role"] != "tool":
            break
        call_ids.append(m["tool_call_id"])
    if call_ids:
        dummy: dict[str, Any] = {
            "role": "assistant",
            "reasoning_content": "",
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                for i in call_ids
            ],
        }
    else:
        dummy = {"role": "assistant", "reasoning_content": "", "content": "x"}
    full = render_ids(tok, [dummy, *env], tools, True, ctk)
    base = render_ids(tok, [dummy], tools, False, ctk)
    assert full[: len(base)] == base, "bridge prefix property"
    stop, gap = prev[-1], 0
    for i in range(len(base) - 1, -1, -1):
        if base[i] == stop:
            gap = len(base) - i - 1
            break
    bridge = full[len(base) - gap :]
    if bridge and bridge[0] == stop:
        bridge = bridge[1:]
    return bridge


def post(eng: EngineProcess, path: str, body: Any, auth: bool = True) -> tuple[int, Any]:
    return eng.call("POST", path, body, headers=AUTH if auth else None)


def raw_post(eng: EngineProcess, path: str, body: Any) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", eng.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **AUTH})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def shared_folder(name: str) -> Path:
    folder = SHARED / name
    if not (folder / "tokenizer.json").is_file():
        # The same policy as the parity suite: a missing model matrix fails, never skips.
        pytest.fail(
            f"shared model folder {name} not found under {SHARED} (set FASTTITO_MODELS)",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="module")
def eng() -> Iterator[EngineProcess]:
    with start_engine(VENDORED, served_model_name=NAME, api_key=KEY, max_model_len=4096) as e:
        yield e


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> None:
    if "eng" in request.fixturenames:
        request.getfixturevalue("eng").reset()


FIRST = [{"role": "user", "content": "What is the weather in Paris?"}]


def chat(eng: EngineProcess, **extra: Any) -> dict[str, Any]:
    body = {
        "model": NAME,
        "messages": FIRST,
        "tools": TOOLS,
        "logprobs": True,
        "return_token_ids": True,
        **extra,
    }
    status, out = post(eng, "/v1/chat/completions", body)
    assert status == 200, out
    return out


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------


def test_models_route_and_api_key(eng: EngineProcess) -> None:
    status, out = eng.call("GET", "/v1/models", headers=AUTH)
    assert status == 200
    assert out["object"] == "list"
    assert out["data"][0]["id"] == NAME and out["data"][0]["object"] == "model"
    assert out["data"][0]["max_model_len"] == 4096
    assert eng.call("GET", "/v1/models") == (401, {"error": "Unauthorized"})
    status, _ = eng.call("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, out = post(eng, "/v1/chat/completions", {"model": "nope", "messages": FIRST})
    assert status == 404 and "does not exist" in out["error"]["message"]
    assert eng.call("GET", "/nope") == (404, {"detail": "Not Found"})
    assert eng.call("GET", "/tokenize")[0] == 405
    assert eng.call("GET", "/health")[0] == 200
    assert eng.call("GET", "/version") == (200, {"version": "0.20.0"})


def test_chat_completion_shape_is_vllms(eng: EngineProcess) -> None:
    tok = hf(VENDORED)
    out = chat(eng, top_logprobs=2, cache_salt="step-1", priority=3)
    assert out["object"] == "chat.completion" and out["model"] == NAME
    assert out["prompt_token_ids"] == render_ids(tok, FIRST, TOOLS, True, {})
    choice = out["choices"][0]
    ids = choice["token_ids"]
    assert ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.decode(ids).startswith("<tool_call>\n")
    assert choice["finish_reason"] == "tool_calls" and choice["stop_reason"] is None
    msg = choice["message"]
    assert msg["role"] == "assistant" and msg["content"] is None
    assert "reasoning" in msg and "reasoning_content" in msg
    (call,) = msg["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert len(call["id"]) == 9 and call["id"].isalnum()
    content = choice["logprobs"]["content"]
    assert len(content) == len(ids)
    for entry, tid in zip(content, ids, strict=True):
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["token"] == tok.decode([tid])
        assert entry["bytes"] == list(entry["token"].encode())
        assert -10 < entry["logprob"] < 0
        assert (
            len(entry["top_logprobs"]) == 2
            and entry["top_logprobs"][0]["logprob"] == entry["logprob"]
        )
    assert out["usage"] == {
        "prompt_tokens": len(out["prompt_token_ids"]),
        "completion_tokens": len(ids),
        "total_tokens": len(out["prompt_token_ids"]) + len(ids),
        "prompt_tokens_details": None,
    }
    again = chat(eng, top_logprobs=2)  # deterministic
    assert again["choices"][0]["token_ids"] == ids
    assert again["choices"][0]["logprobs"] == choice["logprobs"]

    status, plain = post(eng, "/v1/chat/completions", {"model": NAME, "messages": FIRST})
    assert status == 200
    assert plain["prompt_token_ids"] is None and plain["choices"][0]["token_ids"] is None
    assert plain["choices"][0]["logprobs"] is None
    out = chat(eng, return_tokens_as_token_ids=True)
    assert out["choices"][0]["logprobs"]["content"][0]["token"] == f"token_id:{ids[0]}"


def test_chat_max_tokens_and_stop_token_ids(eng: EngineProcess) -> None:
    tok = hf(VENDORED)
    full = chat(eng)["choices"][0]["token_ids"]
    out = chat(eng, max_completion_tokens=3)
    choice = out["choices"][0]
    assert choice["token_ids"] == full[:3] and choice["finish_reason"] == "length"
    assert choice["message"]["tool_calls"] == []
    assert choice["message"]["content"] == tok.decode(full[:3], skip_special_tokens=True)
    assert chat(eng, max_tokens=4)["choices"][0]["token_ids"] == full[:4]
    newline = full.index(198)
    out = chat(eng, stop_token_ids=[198])
    choice = out["choices"][0]
    assert choice["token_ids"] == full[: newline + 1]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", 198)
    status, err = post(
        eng, "/v1/chat/completions", {"model": NAME, "messages": FIRST, "max_tokens": 0}
    )
    assert status == 400 and err["error"]["type"] == "BadRequestError"


def test_request_validation_like_vllm(eng: EngineProcess) -> None:
    base = {"model": NAME, "messages": FIRST}
    for bad in (
        {"cache_salt": ""},
        {"priority": "high"},
        {"top_logprobs": 3},
        {"messages": []},
        {"messages": [{"content": "no role"}]},
        {"stream": True},
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    ):
        status, out = post(eng, "/v1/chat/completions", {**base, **bad})
        assert status == 400, (bad, out)
        assert set(out["error"]) >= {"message", "type", "param", "code"}
    status, out = eng.call("POST", "/v1/chat/completions", None, headers=AUTH)
    assert status == 400
    # content parts are joined like vLLM; string arguments are parsed before rendering
    status, out = post(
        eng,
        "/tokenize",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ]
        },
    )
    assert status == 200
    assert out["tokens"] == render_ids(
        hf(VENDORED), [{"role": "user", "content": "a\nb"}], None, True, {}
    )


def test_tokens_route(eng: EngineProcess) -> None:
    first = chat(eng)
    tokens = first["prompt_token_ids"]
    body = {
        "model": NAME,
        "messages": FIRST,
        "tools": TOOLS,
        "tokens": tokens,
        "return_token_ids": True,
        "logprobs": True,
    }
    status, out = post(eng, "/v1/chat/completions/tokens", body)
    assert status == 200
    assert out["prompt_token_ids"] == tokens
    assert out["choices"][0]["token_ids"] == first["choices"][0]["token_ids"]
    # the prompt ids are the request's tokens, whatever the messages render to
    status, out = post(eng, "/v1/chat/completions/tokens", {**body, "tokens": [9707, 1879]})
    assert status == 200 and out["prompt_token_ids"] == [9707, 1879]
    assert eng.requests()[-1]["prompt_ids"] == [9707, 1879]
    for bad in (
        {"tokens": list(range(100, 4196))},
        {"tokens": [10**7]},
        {"tokens": []},
        {"tokens": None},
        {"messages": None},
    ):
        status, out = post(eng, "/v1/chat/completions/tokens", {**body, **bad})
        assert status == 400, bad
    status, out = post(
        eng, "/v1/chat/completions/tokens", {**body, "tokens": list(range(100, 4196))}
    )
    assert "maximum context length is 4096" in out["error"]["message"]
    del body["tokens"]
    assert post(eng, "/v1/chat/completions/tokens", body)[0] == 400


def test_tokenize_route(eng: EngineProcess) -> None:
    tok = hf(VENDORED)
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    status, out = post(eng, "/tokenize", {"model": NAME, "messages": msgs, "tools": None})
    assert status == 200
    assert out == {
        "count": len(out["tokens"]),
        "max_model_len": 4096,
        "tokens": render_ids(tok, msgs, None, True, {}),
        "token_strs": None,
    }
    status, out = post(
        eng,
        "/tokenize",
        {
            "messages": msgs,
            "add_generation_prompt": False,
            "continue_final_message": True,
            "return_token_strs": True,
        },
    )
    assert status == 200
    assert tok.decode(out["tokens"]).endswith("hello")
    assert out["token_strs"] == tok.convert_ids_to_tokens(out["tokens"])
    status, out = post(eng, "/tokenize", {"messages": msgs, "continue_final_message": True})
    assert status == 400 and "add_generation_prompt" in out["error"]["message"]
    status, out = post(
        eng,
        "/tokenize",
        {"messages": msgs, "tools": TOOLS, "chat_template_kwargs": {"enable_thinking": False}},
    )
    assert out["tokens"] == render_ids(tok, msgs, TOOLS, True, {})
    status, out = post(eng, "/tokenize", {"prompt": "Hello world"})
    assert status == 200 and out["tokens"] == [9707, 1879] and out["count"] == 2
    assert post(eng, "/tokenize", {"model": NAME})[0] == 400
    status, out = post(eng, "/detokenize", {"tokens": [9707, 1879]})
    assert (status, out) == (200, {"prompt": "Hello world"})


# ---------------------------------------------------------------------------------------------
# The TITO loop: completions are the template's own rendering
# ---------------------------------------------------------------------------------------------

FAMILIES = {
    # id: (folder getter, script, chat_template_kwargs)
    "vendored-qwen2.5": (lambda: VENDORED, {"parallel": 2}, {}),
    "qwen3": (lambda: shared_folder("qwen3"), {"reasoning": "I should check the weather."}, {}),
    "llama-3.2": (lambda: shared_folder("llama-3.2"), {}, LLAMA_KW),
    "mistral-nemo": (lambda: shared_folder("mistral-nemo"), {}, {}),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request: pytest.FixtureRequest) -> Iterator[tuple[str, EngineProcess, Path]]:
    folder = FAMILIES[request.param][0]()
    with start_engine(folder, served_model_name=NAME) as e:
        yield request.param, e, folder


def test_five_turn_tool_agent_loop_is_template_exact(
    family: tuple[str, EngineProcess, Path],
) -> None:
    name, e, folder = family
    e.reset()
    _, script, ctk = FAMILIES[name]
    e.script(mode="tool_agent", tool_calls=4, **script)
    tok = hf(folder)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in four cities, please."}
    ]
    base = {
        "model": NAME,
        "tools": TOOLS,
        "logprobs": True,
        "return_token_ids": True,
        "chat_template_kwargs": ctk,
        "cache_salt": "salt-1",
    }
    status, out = e.call("POST", "/v1/chat/completions", {**base, "messages": messages})
    assert status == 200, out
    for turn in range(1, 6):
        choice = out["choices"][0]
        prompt, completion = out["prompt_token_ids"], choice["token_ids"]
        assert len(choice["logprobs"]["content"]) == len(completion)
        msg = choice["message"]
        parallel = script.get("parallel", 1)
        if turn < 5:
            assert choice["finish_reason"] == "tool_calls", (turn, choice)
            assert len(msg["tool_calls"]) == parallel
        else:
            assert choice["finish_reason"] == "stop"
            assert msg["content"] == f"Final answer after {4 * parallel} tool calls."
            break
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": msg["content"],
            "tool_calls": msg["tool_calls"],
        }
        if msg["reasoning_content"] is not None:
            assistant["reasoning_content"] = msg["reasoning_content"]
        env = [
            {"role": "tool", "tool_call_id": tc["id"], "content": f"sunny, {20 + turn} C"}
            for tc in msg["tool_calls"]
        ]
        messages = [*messages, assistant, *env]
        tokens = prompt + completion + bridge_ids(tok, prompt + completion, env, TOOLS, ctk)
        assert tokens == render_ids(tok, messages, TOOLS, True, ctk), (
            f"turn {turn}: not template-exact"
        )
        status, out = e.call(
            "POST", "/v1/chat/completions/tokens", {**base, "messages": messages, "tokens": tokens}
        )
        assert status == 200, out
        assert out["prompt_token_ids"] == tokens
    recs = e.requests()
    assert [r["path"] for r in recs] == ["/v1/chat/completions"] + [
        "/v1/chat/completions/tokens"
    ] * 4
    # tool-call turns are history-stable; qwen3 drops the reasoning of a final answer once a
    # new user message follows (models/README.md), and the engine says so
    stable = [r["history_stable"] for r in recs]
    assert all(stable[:-1]), [r["history_detail"] for r in recs]
    # (mistral-nemo moves [AVAILABLE_TOOLS] in front of a new user message)
    assert stable[-1] is (name not in ("qwen3", "mistral-nemo")), recs[-1]["history_detail"]


def test_unstable_or_rejected_turns_are_errors_not_wrong_ids(
    family: tuple[str, EngineProcess, Path],
) -> None:
    name, e, _ = family
    e.reset()
    ctk = FAMILIES[name][2]
    body = {"model": NAME, "tools": TOOLS, "messages": FIRST, "chat_template_kwargs": ctk}
    if name == "qwen3":  # no reasoning: the empty think block vanishes from history
        e.script(mode="tool_agent", strict_stability=True)
        status, out = e.call("POST", "/v1/chat/completions", body)
        assert status == 500 and out["error"]["reason"] == "history_unstable", out
        e.script(mode="tool_agent")
        assert e.call("POST", "/v1/chat/completions", body)[0] == 200
        assert e.requests()[-1]["history_stable"] is False
    elif name == "llama-3.2":  # its template raises on parallel tool calls
        e.script(mode="tool_agent", parallel=2)
        status, out = e.call("POST", "/v1/chat/completions", body)
        assert status == 500 and out["error"]["reason"] == "template_rejected_scripted_message"
    else:
        e.script(mode="tool_agent", parallel=2)
        status, out = e.call("POST", "/v1/chat/completions", body)
        assert status == 200 and len(out["choices"][0]["message"]["tool_calls"]) == 2


def test_generate_loop_from_ids_only(eng: EngineProcess) -> None:
    tok = hf(VENDORED)
    eng.script(mode="tool_agent", tool_calls=1, tools=TOOLS)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    ids = render_ids(tok, messages, TOOLS, True, {})
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    # what follows each turn's assistant message: tool result / user / tool result + user
    plan = {1: ["tool"], 2: ["user"], 3: ["tool", "user"]}
    for turn in range(1, 5):
        body = {
            "model": NAME,
            "token_ids": ids,
            "request_id": f"r{turn}",
            "cache_salt": "s",
            "priority": 2,
            "sampling_params": {
                "max_tokens": 200,
                "stop_token_ids": [stop, 151643],
                "logprobs": 1,
                "skip_special_tokens": False,
            },
        }
        echo = turn % 2 == 1
        if echo:
            body["return_token_ids"] = True
        status, out = post(eng, "/inference/v1/generate", body, auth=False)
        assert status == 200, out
        # vLLM 0.32's tokens mode: the prompt is echoed only when asked
        assert out["request_id"] == f"r{turn}" and out["output_mode"] == "tokens"
        assert out["prompt_token_ids"] == (ids if echo else None)
        choice = out["choices"][0]
        completion = choice["token_ids"]
        assert choice["finish_reason"] == "stop" and completion[-1] == stop
        entries = choice["logprobs"]["content"]
        assert [c["token_id"] for c in entries] == completion
        assert all("token" not in c and c["rank"] == 1 for c in entries)
        assert all(len(c["top_logprobs"]) == 1 for c in entries)
        assert out["usage"]["completion_tokens"] == len(completion)
        # the same completion the messages route gives for this conversation
        status, ref = post(
            eng,
            "/v1/chat/completions",
            {"model": NAME, "messages": messages, "tools": TOOLS, "return_token_ids": True},
        )
        assert ref["choices"][0]["token_ids"] == completion
        msg = ref["choices"][0]["message"]
        if turn == 2:
            assert msg["content"] == "Final answer after 1 tool calls." and not msg["tool_calls"]
        else:
            assert len(msg["tool_calls"]) == 1
        if turn == 4:
            break
        messages.append(
            {"role": "assistant", "content": msg["content"], "tool_calls": msg["tool_calls"]}
        )
        env = [
            {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": f"rain {turn}"}
            if role == "tool"
            else {"role": "user", "content": f"And {turn}?"}
            for role in plan[turn]
        ]
        messages += env
        ids = ids + completion + bridge_ids(tok, ids + completion, env, TOOLS, {})
        assert ids == render_ids(tok, messages, TOOLS, True, {})
    derived = [r["derived"] for r in eng.requests() if r["path"] == "/inference/v1/generate"]
    assert derived[0] == {
        "from": "fresh",
        "tail_roles": ["system", "user"],
        "tools": ["get_weather"],
    }
    assert [d["from"] for d in derived[1:]] == ["prefix"] * 3
    assert [d["tail_roles"] for d in derived[1:]] == list(plan.values())
    # ids the engine cannot explain are a clear error, not a made-up answer
    status, out = post(eng, "/inference/v1/generate", {"token_ids": [9707, 1879]}, auth=False)
    assert status == 500 and out["error"]["reason"] == "ids_not_understood"
    status, out = post(eng, "/inference/v1/generate", {"token_ids": [10**7]}, auth=False)
    assert status == 400 and "out of vocabulary" in out["error"]["message"]


# ---------------------------------------------------------------------------------------------
# Admin API
# ---------------------------------------------------------------------------------------------


def test_admin_requests_record_headers_body_and_ids(eng: EngineProcess) -> None:
    out = chat(eng, cache_salt="abc")
    recs = eng.requests()
    assert len(recs) == 1
    rec = recs[0]
    assert rec["path"] == "/v1/chat/completions" and rec["method"] == "POST"
    assert rec["headers"]["authorization"] == "<redacted>"
    assert KEY not in json.dumps(recs)
    assert rec["authorization_present"] is True and rec["authorization_valid"] is True
    assert rec["body"]["cache_salt"] == "abc"
    assert rec["prompt_ids"] == out["prompt_token_ids"]
    assert rec["completion_ids"] == out["choices"][0]["token_ids"]
    assert rec["status"] == 200 and rec["fault"] is None
    eng.call("GET", "/v1/models")
    assert (
        eng.requests()[-1]["authorization_present"] is False and eng.requests()[-1]["status"] == 401
    )
    eng.reset()
    assert eng.requests() == []
    assert eng.call("GET", "/_admin/script")[1]["script"]["mode"] == "tool_agent"


def test_admin_scripts(eng: EngineProcess) -> None:
    tok = hf(VENDORED)
    eng.script(mode="text", content="Plain answer.")
    out = chat(eng)
    assert out["choices"][0]["message"]["content"] == "Plain answer."
    assert tok.decode(out["choices"][0]["token_ids"]) == "Plain answer.<|im_end|>"
    assert out["choices"][0]["finish_reason"] == "stop"
    fixed = {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {
                "id": "call12345",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            }
        ],
    }
    eng.script(mode="fixed", message=fixed)
    msg = chat(eng)["choices"][0]["message"]
    assert msg["content"] == "Let me look." and msg["tool_calls"][0]["id"] == "call12345"
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"city": "Rome"}
    eng.script(mode="sequence", messages=[{"content": "first"}, {"content": "second"}])
    assert chat(eng)["choices"][0]["message"]["content"] == "first"
    two = [*FIRST, {"role": "assistant", "content": "first"}, {"role": "user", "content": "more"}]
    assert chat(eng, messages=two)["choices"][0]["message"]["content"] == "second"
    eng.script(mode="tool_agent", tool_calls=1, parallel=3, final_content="done")
    calls = chat(eng)["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["call00000", "call00001", "call00002"]
    assert len({c["function"]["arguments"] for c in calls}) == 3
    after = [
        *FIRST,
        {"role": "assistant", "tool_calls": calls},
        *({"role": "tool", "tool_call_id": c["id"], "content": "x"} for c in calls),
    ]
    assert chat(eng, messages=after)["choices"][0]["message"]["content"] == "done"
    ls_tool = {
        "type": "function",
        "function": {
            "name": "ls",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "depth": {"type": "integer"}},
            },
        },
    }
    call = chat(eng, tools=[ls_tool])["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "ls"
    assert json.loads(call["function"]["arguments"]) == {"path": "path-0", "depth": 0}
    for bad in (
        {"mode": "dance"},
        {"tool_calls": -1},
        {"mode": "sequence"},
        {"bogus": 1},
        {"mode": "fixed", "message": "x"},
    ):
        assert eng.call("POST", "/_admin/script", bad)[0] == 400, bad
    assert eng.call("POST", "/_admin/script", {"turns": 5})[1]["script"]["tool_calls"] == 5


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

STOPS = {151645, 151643}


def _chat_body() -> dict[str, Any]:
    return {
        "model": NAME,
        "messages": FIRST,
        "tools": TOOLS,
        "logprobs": True,
        "return_token_ids": True,
    }


@pytest.mark.parametrize("mode", ["http_500", "http_502", "http_503"])
def test_fault_status(eng: EngineProcess, mode: str) -> None:
    eng.faults({"mode": mode, "count": 2})
    code = int(mode[-3:])
    for _ in range(2):
        status, out = post(eng, "/v1/chat/completions", _chat_body())
        assert status == code and out["error"]["code"] == code
    assert post(eng, "/v1/chat/completions", _chat_body())[0] == 200
    assert [r["fault"] for r in eng.requests()] == [mode, mode, None]


def test_fault_status_custom_and_path_filter(eng: EngineProcess) -> None:
    eng.faults({"mode": "status", "status": 429, "body": "slow down", "path": "/tokenize"})
    assert post(eng, "/v1/chat/completions", _chat_body())[0] == 200
    assert post(eng, "/tokenize", {"prompt": "x"}) == (429, "slow down")
    assert post(eng, "/tokenize", {"prompt": "x"})[0] == 200
    eng.faults({"mode": "missing_token_ids"})
    assert post(eng, "/tokenize", {"prompt": "x"})[0] == 200  # body faults skip /tokenize
    assert eng.call("GET", "/_admin/faults")[1]["faults"][0]["mode"] == "missing_token_ids"
    eng.faults(replace=True)
    assert eng.call("GET", "/_admin/faults")[1]["faults"] == []
    assert eng.call("POST", "/_admin/faults", {"mode": "explode"})[0] == 400


def test_fault_delay(eng: EngineProcess) -> None:
    eng.faults({"mode": "delay", "seconds": 0.6})
    t0 = time.monotonic()
    assert post(eng, "/v1/chat/completions", _chat_body())[0] == 200
    assert time.monotonic() - t0 >= 0.6


def test_fault_reset_and_drop(eng: EngineProcess) -> None:
    eng.faults({"mode": "reset"})
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        raw_post(eng, "/v1/chat/completions", _chat_body())
    eng.faults({"mode": "drop"})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        raw_post(eng, "/v1/chat/completions", _chat_body())
    assert raw_post(eng, "/v1/chat/completions", _chat_body())[0] == 200
    assert [r["status"] for r in eng.requests()] == ["reset", "dropped", 200]


@pytest.mark.parametrize("mode", ["truncated_json", "malformed_json"])
def test_fault_bad_json(eng: EngineProcess, mode: str) -> None:
    eng.faults({"mode": mode})
    status, body = raw_post(eng, "/v1/chat/completions", _chat_body())
    assert status == 200 and body
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/inference/v1/generate"])
@pytest.mark.parametrize(
    "mode",
    [
        "missing_token_ids",
        "missing_prompt_token_ids",
        "short_logprobs",
        "null_logprob",
        "oov_token_id",
        "no_stop_token",
    ],
)
def test_fault_body_shapes(eng: EngineProcess, mode: str, path: str) -> None:
    if path == "/inference/v1/generate":
        ids = chat(eng)["prompt_token_ids"]
        body: dict[str, Any] = {"token_ids": ids, "sampling_params": {"logprobs": 1}}
    else:
        body = _chat_body()
    status, good = post(eng, path, body)
    assert status == 200
    eng.faults({"mode": mode, "path": path})
    status, out = post(eng, path, body)
    assert status == 200
    choice, ref = out["choices"][0], good["choices"][0]
    lps = (choice.get("logprobs") or {}).get("content")
    if mode == "missing_token_ids":
        assert "token_ids" not in choice and "prompt_token_ids" in out
    elif mode == "missing_prompt_token_ids":
        assert "prompt_token_ids" not in out and choice["token_ids"] == ref["token_ids"]
    elif mode == "short_logprobs":
        assert len(lps) == len(choice["token_ids"]) - 1
    elif mode == "null_logprob":
        assert len(lps) == len(choice["token_ids"])
        assert sum(e["logprob"] is None for e in lps) == 1
    elif mode == "oov_token_id":
        assert choice["token_ids"][0] >= len(hf(VENDORED))
        assert choice["token_ids"][1:] == ref["token_ids"][1:]
    elif mode == "no_stop_token":
        assert choice["token_ids"] == ref["token_ids"][:-1]
        assert choice["token_ids"][-1] not in STOPS and len(lps) == len(choice["token_ids"])
        assert choice["finish_reason"] == ref["finish_reason"]
    assert eng.requests()[-1]["fault"] == mode
    assert eng.requests()[-1]["completion_ids"] == ref["token_ids"]  # the record keeps the truth
    assert post(eng, path, body)[1]["choices"][0].get("token_ids") == ref["token_ids"]


# ---------------------------------------------------------------------------------------------
# Process lifetime: flags, idle timeout, parent death
# ---------------------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie (exited, not yet reaped by whoever adopted it) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _wait_exit(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if _gone(pid):
            return True
        try:  # reap it if it is our child
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return True
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return False


def test_lifetime_idle_timeout_parent_death_and_flags() -> None:
    # parent death: a short-lived parent starts an engine, prints its pid and exits
    parent_code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from fasttito.testing.launch import start_engine
        e = start_engine({str(VENDORED)!r})
        print(e.pid, e.log_path, flush=True)
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    idle = start_engine(
        VENDORED,
        idle_timeout=2.0,
        extra_args=[
            "--scheduling-policy",
            "fcfs",
            "--disable-route",
            "/v1/chat/completions/tokens",
        ],
    )
    try:
        body = {"messages": FIRST, "priority": 5}
        status, out = idle.call("POST", "/v1/chat/completions", body)
        assert status == 400 and "Priority scheduling is not enabled" in out["error"]["message"]
        assert idle.call("POST", "/v1/chat/completions", {**body, "priority": 0})[0] == 200
        assert idle.call(
            "POST", "/v1/chat/completions/tokens", {"messages": FIRST, "tokens": [1]}
        ) == (404, {"detail": "Not Found"})
        assert idle.model == "qwen2.5"  # default served name: the folder's name
        assert _wait_exit(idle.pid, 8.0), "engine did not stop after its idle timeout"
        assert "idle" in idle.log_tail()
    finally:
        stop_engine(idle)
    out, _ = parent.communicate(timeout=60)
    pid, log = out.strip().splitlines()[-1].split(" ", 1)
    assert _wait_exit(int(pid), 5.0), "engine outlived its parent"
    Path(log).unlink(missing_ok=True)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", idle.port), timeout=1).close()


def test_generate_shapes_and_scale_out_flag() -> None:
    """prime-rl's labelled entries (prompt ids always echoed), and vLLM 0.32's 403 when the
    server runs without --enable-scale-out (its message, measured on a running vLLM 0.32)."""
    tok = hf(VENDORED)
    ids = render_ids(tok, FIRST, TOOLS, True, {})
    body = {"model": NAME, "token_ids": ids, "sampling_params": {"max_tokens": 8, "logprobs": 2}}
    with start_engine(
        VENDORED, served_model_name=NAME, extra_args=["--generate-shape", "labels"]
    ) as labels:
        status, out = labels.call("POST", "/inference/v1/generate", body)
        assert status == 200 and out["prompt_token_ids"] == ids and "output_mode" not in out
        choice = out["choices"][0]
        entries = choice["logprobs"]["content"]
        assert [e["token"] for e in entries] == [f"token_id:{t}" for t in choice["token_ids"]]
        assert all(len(e["top_logprobs"]) == 2 and "token_id" not in e for e in entries)
    with start_engine(VENDORED, served_model_name=NAME, extra_args=["--no-scale-out"]) as off:
        status, out = off.call("POST", "/inference/v1/generate", body)
        assert status == 403
        assert "--enable-scale-out" in out["error"]["message"]
        # the other routes still serve
        assert off.call("GET", "/v1/models")[0] == 200
