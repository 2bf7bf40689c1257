"""The real NVIDIA Dynamo frontend (PyPI ai-dynamo==1.6.1) with the scripted engine
(``fasttito.testing.dynamo_engine``), driven with plain ``urllib``: no fasttito client code is
used here.

This pins down the wire contract that fasttito's Dynamo transport is written against
(``docs/wire.md`` section C): the canonical token-in request, ``nvext.engine_data`` in the
response, the 400s Dynamo gives for vLLM-only or unknown keys, and a multi-turn tool loop whose
turn-k prompt is turn k-1's prompt + completion + bridge ids.

Needs ``scripts/install-dynamo.sh`` (Dynamo in ``.venv``). Without Dynamo the module is skipped
with a reason, unless ``FASTTITO_REQUIRE_DYNAMO=1`` (CI sets it), where it fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fasttito.testing.dynamo_launch import DynamoHandle, dynamo_importable, start_dynamo

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO_ROOT / "models" / "qwen2.5"  # vendored: works whatever FASTTITO_MODELS says
SERVED = "qwen2.5-tito"
IM_END, ENDOFTEXT = 151645, 151643
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
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
]
TEXT_ANSWER = "All done: the tools were called."

if not dynamo_importable():
    if os.environ.get("FASTTITO_REQUIRE_DYNAMO", "") not in ("", "0", "false"):
        raise RuntimeError(
            "FASTTITO_REQUIRE_DYNAMO is set but ai-dynamo is not importable in "
            f"{sys.executable}; run scripts/install-dynamo.sh"
        )
    pytest.skip(
        "ai-dynamo is not installed in this interpreter (run scripts/install-dynamo.sh)",
        allow_module_level=True,
    )


# --------------------------------------------------------------------------- fixtures, helpers


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not yet reaped) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def dynamo() -> Iterator[DynamoHandle]:
    handle = start_dynamo(MODEL_DIR, SERVED, timeout=60)
    try:
        yield handle
    finally:
        pids, run_dir = handle.pids, handle.run_dir
        handle.stop()
        assert not any(_pid_alive(p) for p in pids), f"processes left behind: {pids}"
        assert not run_dir.exists()


@pytest.fixture(autouse=True)
def _clean_control(request: pytest.FixtureRequest) -> Iterator[None]:
    if "dynamo" not in request.fixturenames:
        yield
        return
    handle: DynamoHandle = request.getfixturevalue("dynamo")
    handle.clear_control()
    yield
    handle.clear_control()


@pytest.fixture(scope="module")
def tok() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MODEL_DIR))


def ids_of(tok: Any, conv: list[dict[str, Any]], *, gen: bool) -> list[int]:
    out = tok.apply_chat_template(conv, tools=TOOLS, add_generation_prompt=gen, tokenize=True)
    ids = out if isinstance(out, list) else out["input_ids"]
    return [int(i) for i in ids]


def text_of(tok: Any, conv: list[dict[str, Any]], *, gen: bool) -> str:
    out = tok.apply_chat_template(conv, tools=TOOLS, add_generation_prompt=gen, tokenize=False)
    assert isinstance(out, str)
    return out


def post(handle: DynamoHandle, body: dict[str, Any], timeout: float = 15.0) -> tuple[int, str]:
    req = urllib.request.Request(
        f"{handle.base_url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def tito_body(token_data: list[int], **overrides: Any) -> dict[str, Any]:
    """The canonical Dynamo token-in request of docs/wire.md C.1 (renderers #79 ``_build_body``)."""
    body: dict[str, Any] = {
        "model": SERVED,
        "messages": [{"role": "user", "content": ""}],
        "stream": False,
        "nvext": {
            "token_data": token_data,
            "extra_fields": ["engine_data"],
            "cache_salt": "17",
            "agent_hints": {"priority": 5},
        },
        "max_completion_tokens": 2048,
        "temperature": 1.0,
        "stop_token_ids": [IM_END, ENDOFTEXT],
        "logprobs": True,
        "skip_special_tokens": False,
    }
    body.update(overrides)
    return body


def tool_call_ids(tok: Any, step: int, name: str = "get_weather") -> list[int]:
    """What the engine must answer for tool call ``step``: Qwen2.5's rendering + <|im_end|>."""
    text = f'<tool_call>\n{{"name": "{name}", "arguments": {{"step": {step}}}}}\n</tool_call>'
    return [*tok.encode(text, add_special_tokens=False), IM_END]


def parse_tool_call(tok: Any, completion: list[int]) -> dict[str, Any]:
    """Turn a Qwen2.5 tool-call completion back into an assistant message."""
    text = tok.decode(completion, skip_special_tokens=False)
    m = re.fullmatch(r"<tool_call>\n(.*)\n</tool_call><\|im_end\|>", text, re.DOTALL)
    assert m, f"not a tool call: {text!r}"
    call = json.loads(m.group(1))
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": f"call_{call['arguments']['step']}",
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
        ],
    }


def bridge_ids(
    tok: Any, conv: list[dict[str, Any]], asst: dict[str, Any], new: list[dict[str, Any]]
) -> list[int]:
    """Ids that follow the sampled completion (which ends in the stop token) so that the result
    ends with the next generation prompt (docs/wire.md E.2): the template text after the stop token
    of ``asst`` (Qwen: the ``\\n`` the engine never samples), then the new messages and the
    generation prompt."""
    base = text_of(tok, [*conv, asst], gen=False)
    full = text_of(tok, [*conv, asst, *new], gen=True)
    assert full.startswith(base), "template is not prefix-stable here"
    stop = tok.decode([IM_END])
    gap = base[base.rindex(stop) + len(stop) :]
    return [int(i) for i in tok.encode(gap + full[len(base) :], add_special_tokens=False)]


def engine_data(resp: dict[str, Any]) -> dict[str, Any]:
    data = resp["nvext"]["engine_data"]
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------- tests


def test_models_lists_the_served_name(dynamo: DynamoHandle) -> None:
    with urllib.request.urlopen(f"{dynamo.base_url}/v1/models", timeout=5) as r:
        body = json.loads(r.read())
    assert [m["id"] for m in body["data"]] == [SERVED]


def test_canonical_tito_request_returns_engine_data(dynamo: DynamoHandle, tok: Any) -> None:
    prompt = ids_of(tok, [{"role": "user", "content": "Weather in Paris?"}], gen=True)
    status, text = post(dynamo, tito_body(prompt))
    assert status == 200, text
    resp = json.loads(text)
    data = engine_data(resp)
    # the engine saw exactly the ids we sent (the frontend did not template or re-tokenize)
    assert data["prompt_token_ids"] == prompt
    completion, logprobs = data["completion_token_ids"], data["completion_logprobs"]
    assert completion == tool_call_ids(tok, 1)
    assert len(logprobs) == len(completion) > 0
    assert all(isinstance(x, float) and x < 0 for x in logprobs)
    (choice,) = resp["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    # Dynamo 1.6.1 runs no tool parser here: the tool call is plain content
    assert choice["message"]["content"] == tok.decode(completion[:-1])
    # the OpenAI logprob channel agrees with engine_data (values are exact in f32)
    content = choice["logprobs"]["content"]
    assert [c["token_id"] for c in content] == completion
    assert [c["logprob"] for c in content] == logprobs
    assert content[-1]["token"] == "" and content[-1]["bytes"] is None  # the hidden eos
    assert resp["usage"] == {
        "prompt_tokens": len(prompt),
        "completion_tokens": len(completion),
        "total_tokens": len(prompt) + len(completion),
    }
    assert resp["object"] == "chat.completion" and resp["model"] == SERVED
    assert set(resp["nvext"]) == {"engine_data"}
    assert set(data) == {"prompt_token_ids", "completion_token_ids", "completion_logprobs"}


def test_request_fields_reach_the_engine(dynamo: DynamoHandle, tok: Any) -> None:
    """What Dynamo makes of the canonical request on the engine side."""
    dynamo.set_control(echo_request=True)
    prompt = ids_of(tok, [{"role": "user", "content": "hi"}], gen=True)
    status, text = post(dynamo, tito_body(prompt, max_completion_tokens=77))
    assert status == 200, text
    req = engine_data(json.loads(text))["request"]
    assert req["token_ids"] == prompt
    assert req["routing"]["cache_salt"] == "17"
    assert req["routing"]["priority"] == 5
    assert req["stop_conditions"]["max_tokens"] == 77
    assert req["stop_conditions"]["stop_token_ids"] == [IM_END, ENDOFTEXT]
    assert req["stop_conditions"]["stop_token_ids_hidden"] == [IM_END]
    assert req["sampling_options"]["temperature"] == 1.0
    assert req["output_options"]["skip_special_tokens"] is False
    assert req["output_options"]["logprobs"] == 1  # `logprobs: true` arrives as top-1
    assert req["extra_args"]["nvext"]["token_in"] is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"return_token_ids": True}, "Validation: Unsupported parameter(s): `return_token_ids`"),
        ({"priority": 5}, "Validation: Unsupported parameter(s): `priority`"),
        (
            {"priority": 5, "return_token_ids": True},
            "Validation: Unsupported parameter(s): `priority`, `return_token_ids`",
        ),
    ],
    ids=["return_token_ids", "priority", "both"],
)
def test_vllm_only_top_level_keys_are_rejected(
    dynamo: DynamoHandle, extra: dict[str, Any], message: str
) -> None:
    status, text = post(dynamo, tito_body([151644, 872, 198], **extra))
    assert status == 400
    got = json.loads(text)
    assert (got["type"], got["code"]) == ("Bad Request", 400)
    # Dynamo lists the offending keys in no fixed order (a hash map): compare them as a set.
    prefix = "Validation: Unsupported parameter(s): "
    assert got["message"].startswith(prefix), got
    assert set(got["message"][len(prefix) :].split(", ")) == set(message[len(prefix) :].split(", "))


NVEXT_FIELDS = (
    "`greed_sampling`, `use_raw_prompt`, `annotations`, `backend_instance_id`, `token_data`, "
    "`max_thinking_tokens`, `cache_salt`, `extra_fields`, `metadata_upload`, "
    "`prefill_worker_id`, `decode_worker_id`, `dp_rank`, `prefill_dp_rank`, `agent_hints`, "
    "`request_timestamp_ms`, `routing_constraints`, `router`"
)


def test_unknown_nvext_key_is_rejected(dynamo: DynamoHandle) -> None:
    # renderers #79 sends this one inside nvext; Dynamo 1.6.1 has no such field
    body = tito_body([151644, 872, 198])
    body["nvext"]["routed_experts_prompt_start"] = 3
    status, text = post(dynamo, body)
    assert status == 400
    err = json.loads(text)
    assert err["type"] == "Bad Request" and err["code"] == 400
    assert re.fullmatch(
        "Failed to deserialize the JSON body into the target type: unknown field "
        rf"`routed_experts_prompt_start`, expected one of {re.escape(NVEXT_FIELDS)} "
        r"at line 1 column \d+",
        err["message"],
    ), err["message"]


def test_unknown_agent_hint_is_rejected(dynamo: DynamoHandle) -> None:
    body = tito_body([151644, 872, 198])
    body["nvext"]["agent_hints"]["session"] = "x"
    status, text = post(dynamo, body)
    assert status == 400
    assert (
        "unknown field `session`, expected one of `priority`, `strict_priority`, `osl`, "
        in (json.loads(text)["message"])
    )


def test_out_of_vocab_token_data_is_rejected(dynamo: DynamoHandle) -> None:
    status, text = post(dynamo, tito_body([151644, 10**6]))
    assert status == 400
    assert json.loads(text) == {"message": "Invalid request", "type": "Bad Request", "code": 400}


def test_tool_loop_stitches_prompt_completion_and_bridge(dynamo: DynamoHandle, tok: Any) -> None:
    """Three tool calls, then the answer. Turn k sends turn k-1's prompt ids + completion ids +
    bridge ids; the engine must see exactly that, and (Qwen2.5 being history-stable) it equals a
    full re-render of the conversation."""
    conv: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
    ]
    prompt = ids_of(tok, conv, gen=True)
    for turn in range(1, 5):
        status, text = post(dynamo, tito_body(prompt))
        assert status == 200, f"turn {turn}: {text}"
        resp = json.loads(text)
        data = engine_data(resp)
        assert data["prompt_token_ids"] == prompt, f"turn {turn}: engine saw other ids"
        completion = data["completion_token_ids"]
        assert len(data["completion_logprobs"]) == len(completion)
        assert completion[-1] == IM_END
        assert resp["choices"][0]["finish_reason"] == "stop"
        if turn == 4:
            assert tok.decode(completion) == TEXT_ANSWER + "<|im_end|>"
            break
        assert completion == tool_call_ids(tok, turn)
        asst = parse_tool_call(tok, completion)
        result = {"role": "tool", "tool_call_id": f"call_{turn}", "content": f"sunny, {turn}"}
        bridge = bridge_ids(tok, conv, asst, [result])
        assert bridge[0] == tok.encode("\n", add_special_tokens=False)[0]  # the unsampled "\n"
        prompt = prompt + completion + bridge
        conv = [*conv, asst, result]
        assert prompt == ids_of(tok, conv, gen=True), f"turn {turn}: stitched != re-render"


def test_max_tokens_truncates_with_finish_length(dynamo: DynamoHandle, tok: Any) -> None:
    prompt = ids_of(tok, [{"role": "user", "content": "Weather?"}], gen=True)
    status, text = post(dynamo, tito_body(prompt, max_completion_tokens=4))
    assert status == 200, text
    resp = json.loads(text)
    assert resp["choices"][0]["finish_reason"] == "length"
    assert engine_data(resp)["completion_token_ids"] == tool_call_ids(tok, 1)[:4]
    assert len(engine_data(resp)["completion_logprobs"]) == 4


def test_strip_stop_mode_drops_the_stop_token(dynamo: DynamoHandle, tok: Any) -> None:
    """Dynamo's SGLang backend returned completions without the stop token (dyn #14302)."""
    dynamo.set_control(strip_stop=True)
    prompt = ids_of(tok, [{"role": "user", "content": "Weather?"}], gen=True)
    status, text = post(dynamo, tito_body(prompt))
    assert status == 200, text
    resp = json.loads(text)
    assert resp["choices"][0]["finish_reason"] == "stop"
    assert engine_data(resp)["completion_token_ids"] == tool_call_ids(tok, 1)[:-1]


def test_streaming_carries_engine_data_on_the_finish_chunk(dynamo: DynamoHandle, tok: Any) -> None:
    prompt = ids_of(tok, [{"role": "user", "content": "Weather?"}], gen=True)
    body = tito_body(prompt, stream=True, stream_options={"include_usage": True})
    status, text = post(dynamo, body)
    assert status == 200, text
    events = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    streamed = [
        c["token_id"]
        for ch in chunks
        for choice in ch["choices"]
        for c in (choice.get("logprobs") or {}).get("content") or []
    ]
    finish = [ch for ch in chunks if ch["choices"] and ch["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "stop"
    data = finish[0]["nvext"]["engine_data"]
    assert data["prompt_token_ids"] == prompt
    assert data["completion_token_ids"] == streamed == tool_call_ids(tok, 1)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(streamed)


def test_injected_errors_map_to_http_statuses(dynamo: DynamoHandle) -> None:
    body = tito_body([151644, 872, 198])
    dynamo.set_control(error="exception", fail_next=1)
    status, text = post(dynamo, body)
    assert status == 500
    assert json.loads(text) == {
        "message": "Internal server error",
        "type": "Internal Server Error",
        "code": 500,
        "details": {"backend_status": 500},
    }
    assert post(dynamo, body)[0] == 200  # fail_next=1: only one failure
    dynamo.set_control(error="invalid_argument", error_message="prompt too long")
    status, text = post(dynamo, body)
    assert (status, json.loads(text)) == (
        400,
        {"message": "prompt too long", "type": "Bad Request", "code": 400},
    )
    dynamo.set_control(error="http:429")
    status, text = post(dynamo, body)
    assert (status, json.loads(text)) == (
        429,
        {"message": "Too Many Requests", "type": "Too Many Requests", "code": 429},
    )


def test_error_mid_stream_is_an_sse_error_event(dynamo: DynamoHandle) -> None:
    dynamo.set_control(error="exception", error_after=2)
    status, text = post(dynamo, tito_body([151644, 872, 198], stream=True))
    assert status == 200  # headers were already sent
    events = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-2:] == [
        '{"error":{"message":"Internal server error","type":"internal_server_error","code":500}}',
        "[DONE]",
    ]
    assert len(events) == 4  # two token chunks, the error, [DONE]
    status, text = post(dynamo, tito_body([151644, 872, 198]))  # not streamed: the whole is a 500
    assert (status, json.loads(text)["code"]) == (500, 500)


def test_delay_knob_delays_the_answer(dynamo: DynamoHandle) -> None:
    dynamo.set_control(delay=0.4)
    t0 = time.monotonic()
    status, _ = post(dynamo, tito_body([151644, 872, 198]))
    assert status == 200
    assert time.monotonic() - t0 >= 0.4


def test_children_exit_when_the_parent_dies(tmp_path: Path) -> None:
    """A test process killed with SIGKILL leaves no Dynamo process or temp dir behind."""
    script = textwrap.dedent(
        f"""
        import json, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        from fasttito.testing.dynamo_launch import start_dynamo
        h = start_dynamo({str(MODEL_DIR)!r}, "orphan", timeout=60)
        print(json.dumps({{"pids": list(h.pids), "run_dir": str(h.run_dir)}}), flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, parent.stderr.read() if parent.stderr else "no output"
        info = json.loads(line)
        assert all(_pid_alive(p) for p in info["pids"])
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_pid_alive(p) for p in info["pids"]):
        time.sleep(0.1)
    left = [p for p in info["pids"] if _pid_alive(p)]
    for p in left:  # never leak, even when the assertion below fails
        with contextlib.suppress(OSError):
            os.killpg(p, signal.SIGKILL)
    assert not left, f"still running after the parent died: {left}"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(info["run_dir"]).exists():
        time.sleep(0.1)
    assert not Path(info["run_dir"]).exists()
