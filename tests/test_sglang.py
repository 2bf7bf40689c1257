"""``sglang-generate`` against fasttito.testing's SGLang engine (SGLang 0.5.23's native
``/generate`` wire as recorded from a real server, docs/wire.md S; a real SGLang cannot run on these
CPU-only machines): exact stitched ids over 8 tool-calling turns, ``cached_tokens`` from the
engine's prefix cache, the request fields, routing keys, ``auto``, the length pre-flight, ids
checked before they leave, the error paths, and 1,000 concurrent rollouts through one Client."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import fasttito
import pytest
from conftest import VENDORED_MODEL_DIR
from fasttito.testing import EngineProcess, start_sglang
from fasttito.transports._base import check_prompt_ids

MODEL = "test-model"
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
ROUTING = "X-SMG-Routing-Key"


@pytest.fixture(scope="module")
def eng() -> Iterator[EngineProcess]:
    with start_sglang(VENDORED_MODEL_DIR, served_model_name=MODEL) as e:
        yield e


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "eng" in request.fixturenames:
        request.getfixturevalue("eng").reset()
    fasttito.reset_metrics()


@pytest.fixture(scope="module")
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


def client_for(eng: EngineProcess, tok: Any, **kw: Any) -> fasttito.Client:
    kw.setdefault("transport", "sglang-generate")
    kw.setdefault("max_retries", 0)
    return fasttito.Client(eng.v1_url, MODEL, tokenizer=tok, **kw)


def generates(eng: EngineProcess) -> list[dict[str, Any]]:
    return [r for r in eng.requests() if r["path"] == "/generate"]


async def tool_rollout(
    client: fasttito.Client, n_turns: int, rollout: Any = None, **gen: Any
) -> tuple[list[fasttito.Turn], list[dict[str, Any]]]:
    rollout = rollout if rollout is not None else client.rollout()
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    turns = []
    for _ in range(n_turns):
        turn = await rollout.generate(messages, tools=TOOLS, **gen)
        turns.append(turn)
        messages.append(turn.message())
        for i, tc in enumerate(turn.tool_calls):
            messages.append({"role": "tool", "tool_call_id": tc["id"], "content": f"sunny {i}"})
        if not turn.tool_calls:
            messages.append({"role": "user", "content": "And in Rome?"})
    return turns, messages


# --------------------------------------------------------------------------- the 8-turn rollout


def test_eight_turn_tool_rollout_exact_ids_and_growing_cache(
    eng: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    eng.script(mode="tool_agent", tool_calls=7)

    async def go() -> tuple[list[fasttito.Turn], list[dict[str, Any]], str]:
        async with client_for(eng, tok, routing_key_header=ROUTING) as c:
            r = c.rollout()
            turns, messages = await tool_rollout(
                c, 8, rollout=r, cache_salt="step-3", priority=2, top_logprobs=2
            )
            return turns, messages, r.routing_key

    turns, messages, key = asyncio.run(go())
    recs = generates(eng)
    assert len(recs) == len(turns) == 8
    assert [t.finish_reason for t in turns] == ["tool_calls"] * 7 + ["stop"]
    assert turns[0].mode == "mito" and all(t.mode == "tito" for t in turns[1:])
    for k, (turn, rec) in enumerate(zip(turns, recs, strict=True)):
        sent = rec["body"]["input_ids"]
        assert sent == rec["prompt_ids"] == list(turn.prompt_ids), f"turn {k + 1}"
        assert rec["completion_ids"] == list(turn.completion_ids)
        lps = turn.completion_logprobs
        assert lps is not None and len(lps) == len(turn.completion_ids)
        assert all(math.isfinite(x) and x < 0 for x in lps)
        top = turn.completion_top_logprobs
        assert top is not None and len(top) == len(turn.completion_ids)
        assert all(
            len(row) == 2 and row[0][0] == t
            for row, t in zip(top, turn.completion_ids, strict=True)
        )
        assert rec["headers"][ROUTING.lower()] == key
        if k == 0:
            assert turn.cached_tokens == 0
            continue
        prev = turns[k - 1]
        head = list(prev.prompt_ids) + list(prev.completion_ids)
        bridge = sent[len(head) :]
        assert sent == head + bridge and bridge, f"turn {k + 1} does not stitch"
        assert turn.tokens_reused == len(head) and turn.bridge_tokens == len(bridge)
        assert rec["derived"]["from"] == "prefix"  # the engine read the bridge as the template's
        # the engine's radix cache holds the previous prompt + completion (minus the last id,
        # which has no KV yet): the cache hit grows turn over turn
        assert turn.cached_tokens == len(head) - 1
        assert turn.cached_tokens > (prev.cached_tokens or 0)
    # the stitched ids are the template's render of the whole conversation (transformers)
    import transformers
    from fasttito.testing.vllm_engine import normalize_messages

    hf = transformers.AutoTokenizer.from_pretrained(str(VENDORED_MODEL_DIR))
    last_prompt = messages[: len(messages) - 2]  # before the final answer and the next question
    text = hf.apply_chat_template(
        normalize_messages(last_prompt), tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    want = hf(text, add_special_tokens=False)["input_ids"]
    assert list(turns[-1].prompt_ids) == list(want)
    body = recs[-1]["body"]
    sp = body["sampling_params"]
    assert sp["max_new_tokens"] == 256 and sp["temperature"] == 1.0
    assert sp["stop_token_ids"] == tok.stop_token_ids
    assert sp["skip_special_tokens"] is False and sp["no_stop_trim"] is True
    assert body["return_logprob"] is True and body["logprob_start_len"] == -1
    assert body["top_logprobs_num"] == 2
    assert body["cache_salt"] == "step-3" and body["priority"] == 2
    assert turns[-1].content == "Final answer after 7 tool calls."
    assert turns[-1].usage == {
        "prompt_tokens": len(turns[-1].prompt_ids),
        "completion_tokens": len(turns[-1].completion_ids),
        "total_tokens": len(turns[-1].prompt_ids) + len(turns[-1].completion_ids),
    }


def test_cache_salt_separates_the_prefix_cache(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="tool_agent", tool_calls=1)

    async def go(salt: str) -> list[fasttito.Turn]:
        async with client_for(eng, tok) as c:
            return (await tool_rollout(c, 2, cache_salt=salt))[0]

    a = asyncio.run(go("policy-1"))
    b = asyncio.run(go("policy-1"))
    c = asyncio.run(go("policy-2"))
    assert a[0].cached_tokens == 0
    assert b[0].cached_tokens == len(b[0].prompt_ids) - 1  # the same prompt, the same salt
    assert c[0].cached_tokens == 0  # a new salt shares nothing


def test_rid_sampling_keys_and_text_never_used(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="text", content="Plain answer.")

    async def go() -> fasttito.Turn:
        async with client_for(eng, tok) as c:
            msgs = [{"role": "user", "content": "hi"}]
            return await c.rollout().generate(
                msgs, max_tokens=50, seed=7, top_k=5, request_id="r-1", extra_body={"min_p": 0.1}
            )

    turn = asyncio.run(go())
    body = generates(eng)[-1]["body"]
    assert body["rid"] == "r-1" and turn.response_id == "r-1"
    sp = body["sampling_params"]
    assert (sp["sampling_seed"], sp["top_k"], sp["min_p"], sp["max_new_tokens"]) == (7, 5, 0.1, 50)
    assert "top_logprobs_num" not in body and turn.completion_top_logprobs is None
    assert turn.content == "Plain answer." and turn.finish_reason == "stop"
    assert turn.stop_reason in tok.stop_token_ids


def test_length_finish_and_next_turn_falls_back(
    eng: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    eng.script(mode="tool_agent", tool_calls=2)

    async def go() -> list[fasttito.Turn]:
        async with client_for(eng, tok) as c:
            r = c.rollout()
            msgs: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo?"}]
            t1 = await r.generate(msgs, tools=TOOLS, max_tokens=3)
            msgs += [t1.message(), {"role": "user", "content": "go on"}]
            t2 = await r.generate(msgs, tools=TOOLS)
            return [t1, t2]

    t1, t2 = asyncio.run(go())
    assert t1.finish_reason == "length" and t1.is_truncated and len(t1.completion_ids) == 3
    assert t2.mode == "mito"  # a truncated turn is never bridged from


# --------------------------------------------------------------------------- --skip-tokenizer-init


def test_skip_tokenizer_init_and_routed_experts(tok: fasttito.Tokenizer) -> None:
    args = ["--skip-tokenizer-init", "--enable-return-routed-experts"]
    with start_sglang(VENDORED_MODEL_DIR, served_model_name=MODEL, extra_args=args) as e:
        e.script(mode="tool_agent", tool_calls=1)

        async def go() -> list[fasttito.Turn]:
            async with client_for(e, tok) as c:
                return (await tool_rollout(c, 2, return_routed_experts=True))[0]

        turns = asyncio.run(go())
        recs = generates(e)
        status, raw = e.call("POST", "/generate", recs[0]["body"])
    assert (
        status == 200 and "text" not in raw and raw["output_ids"] == list(turns[0].completion_ids)
    )
    t1, t2 = turns
    assert t1.tool_calls and t1.tool_calls[0]["function"]["name"] == "get_weather"
    assert t2.content == "Final answer after 1 tool calls." and t2.mode == "tito"
    assert recs[0]["body"]["return_routed_experts"] is True
    for turn in turns:
        assert turn.routed_experts is not None
        raw = base64.b64decode(json.loads(turn.routed_experts))
        seq = len(turn.prompt_ids) + len(turn.completion_ids)
        assert len(raw) == (seq - 1) * 2 * 2 * 4  # int32 [seq - 1, layers 2, topk 2]
        assert all(0 <= x < 8 for x in struct.unpack(f"<{len(raw) // 4}i", raw))


# --------------------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    ("mode", "error", "needle"),
    [
        ("short_logprobs", fasttito.ResponseParseError, "one logprob per completion token id"),
        ("long_logprobs", fasttito.ResponseParseError, "one logprob per completion token id"),
        ("wrong_logprob_id", fasttito.ResponseParseError, "output_token_logprobs["),
        ("null_logprob", fasttito.ResponseParseError, "finite logprob of the sampled token"),
        ("oov_token_id", fasttito.ResponseParseError, "outside the vocabulary"),
        ("missing_output_ids", fasttito.ResponseParseError, "output_ids"),
        ("batch_shape", fasttito.ResponseParseError, "JSON array"),
        ("truncated_json", fasttito.ResponseParseError, "truncated"),
        ("malformed_json", fasttito.ResponseParseError, "not valid JSON"),
        ("abort", fasttito.EngineAbortError, "Abort in waiting queue (injected)."),
        ("drop", fasttito.TransportError, ""),
        ("http_500", fasttito.ServerError, "HTTP 500"),
    ],
)
def test_faults_are_typed_errors_and_the_rollout_survives(
    eng: EngineProcess, tok: fasttito.Tokenizer, mode: str, error: type, needle: str
) -> None:
    eng.script(mode="tool_agent", tool_calls=2)
    eng.faults({"mode": mode, "path": "/generate"})

    async def go() -> tuple[BaseException, fasttito.Turn]:
        async with client_for(eng, tok) as c:
            r = c.rollout()
            msgs = [{"role": "user", "content": "Weather in Oslo?"}]
            with pytest.raises(error) as ei:
                await r.generate(msgs, tools=TOOLS)
            assert len(r) == 0  # nothing was recorded
            return ei.value, await r.generate(msgs, tools=TOOLS)

    exc, turn = asyncio.run(go())
    assert isinstance(exc, fasttito.FasttitoError)
    assert needle in str(exc), str(exc)
    assert turn.tool_calls and turn.turn == 1


def test_503_is_retried(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="text", content="ok")
    eng.faults({"mode": "http_503", "path": "/generate"})

    async def go() -> fasttito.Turn:
        async with client_for(eng, tok, max_retries=1, backoff=0.01) as c:
            return await c.rollout().generate([{"role": "user", "content": "hi"}])

    turn = asyncio.run(go())
    assert turn.content == "ok" and turn.null_logprobs == 0
    assert [r["status"] for r in generates(eng)] == [503, 200]


# --------------------------------------------------------------------------- ids, lengths, auto


class _SmallVocab:
    """The Client's tokenizer with a smaller ``vocab_size``: as if the served model's ids and
    the tokenizer disagreed (or a recorded id were corrupt)."""

    def __init__(self, inner: fasttito.Tokenizer, vocab_size: int) -> None:
        self._inner = inner
        self.vocab_size = vocab_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_ids_outside_the_vocabulary_never_leave(
    eng: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    eng.script(mode="tool_agent", tool_calls=2)

    async def go() -> fasttito.InvalidTokenIdError:
        async with client_for(eng, tok) as c:
            r = c.rollout()
            msgs: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo?"}]
            t1 = await r.generate(msgs, tools=TOOLS)
            msgs.append(t1.message())
            msgs.append({"role": "tool", "tool_call_id": t1.tool_calls[0]["id"], "content": "x"})
            c.tokenizer = _SmallVocab(tok, 150_000)  # type: ignore[assignment]
            with pytest.raises(fasttito.InvalidTokenIdError) as ei:
                await r.generate(msgs, tools=TOOLS)
            return ei.value

    err = asyncio.run(go())
    assert err.vocab_size == 150_000 and err.token_id >= 150_000
    assert "outside the tokenizer's vocabulary" in str(err) and "was not sent" in str(err)
    assert isinstance(err, fasttito.TokenizationError) and isinstance(err, ValueError)
    assert len(generates(eng)) == 1  # the second turn never reached the engine
    with pytest.raises(fasttito.InvalidTokenIdError, match="prompt id -1 at position 2"):
        check_prompt_ids([1, 2, -1], 10, "x")
    with pytest.raises(fasttito.InvalidTokenIdError, match="prompt id 10 at position 0"):
        check_prompt_ids(fasttito.TokenIds([10, 1]), 10, "x")
    check_prompt_ids(fasttito.TokenIds([9, 0]), 10, "x")
    check_prompt_ids([], 10, "x")


def test_the_engine_dies_on_an_out_of_range_id_like_sglang() -> None:
    with start_sglang(VENDORED_MODEL_DIR, served_model_name=MODEL) as e:
        status, _ = e.call("GET", "/health")
        assert status == 200
        with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
            body = json.dumps({"input_ids": [1, 151_665 + 100]}).encode()
            s.sendall(
                b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert s.recv(4096) == b""  # no answer: the connection drops
        deadline = time.monotonic() + 10
        while e.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not e.alive() and e.proc.returncode == 1
        assert "IndexError" in e.log_tail()


def test_length_preflight_from_server_info_and_auto_by_get_model_info(
    tok: fasttito.Tokenizer,
) -> None:
    args = ["--hide-max-model-len", "--disable-route", "/v1/models", "--disable-route", "/generate"]
    with start_sglang(
        VENDORED_MODEL_DIR, served_model_name=MODEL, context_length=120, extra_args=args
    ) as e:

        async def go() -> tuple[str, str, BaseException]:
            async with fasttito.Client(e.v1_url, MODEL, tokenizer=tok) as c:
                picked = c.transport
                with pytest.raises(fasttito.OverlongPromptError) as ei:
                    await c.rollout().generate([{"role": "user", "content": "hi " * 200}])
                with pytest.raises(fasttito.UnsupportedRouteError, match="SGLang's native route"):
                    await c.rollout().generate([{"role": "user", "content": "hi"}])
            async with fasttito.Client(e.v1_url, MODEL) as bare:
                return picked, bare.transport, ei.value

        picked, bare, err = asyncio.run(go())
        paths = [r["path"] for r in e.requests()]
    assert picked == "sglang-generate" and bare == "chat"
    assert isinstance(err, fasttito.OverlongPromptError) and err.max_model_len == 119
    assert paths.count("/generate") == 1  # the short prompt only
    assert paths.count("/server_info") == 1 and "/get_model_info" in paths


def test_auto_reads_owned_by_sglang(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    async def go() -> str:
        async with fasttito.Client(eng.v1_url, MODEL, tokenizer=tok) as c:
            return c.transport

    assert asyncio.run(go()) == "sglang-generate"
    assert [r["path"] for r in eng.requests()] == ["/v1/models"]
    for alias in ("sglang", "sglang_generate", "sglang-generate"):
        c = fasttito.Client(eng.v1_url, MODEL, transport=alias, tokenizer=tok)
        assert c.transport == "sglang-generate"
    with pytest.raises(fasttito.ConfigError, match="needs a tokenizer"):
        fasttito.Client(eng.v1_url, MODEL, transport="sglang")


def test_overlong_prompt_from_v1_models(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    async def go() -> None:
        async with client_for(eng, tok) as c:
            await c.rollout().generate([{"role": "user", "content": "word " * 40_000}])

    with pytest.raises(fasttito.OverlongPromptError, match="max_model_len is 32768"):
        asyncio.run(go())
    assert generates(eng) == []


# --------------------------------------------------------------------------- routing keys


def test_routing_keys_per_rollout(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.script(mode="tool_agent", tool_calls=1)

    async def go(**kw: Any) -> list[Any]:
        async with client_for(eng, tok, **kw) as c:
            rollouts = [c.rollout(), c.rollout(), c.rollout(routing_key="group-7/sample-0")]
            await asyncio.gather(*(tool_rollout(c, 2, rollout=r) for r in rollouts))
            return [r.routing_key for r in rollouts]

    keys = asyncio.run(go(routing_key_header=ROUTING))
    assert keys[2] == "group-7/sample-0" and len(set(keys)) == 3
    seen: dict[str, list[str]] = {}
    for rec in generates(eng):
        seen.setdefault(rec["headers"][ROUTING.lower()], []).append(rec["seq"])
    assert sorted(seen) == sorted(keys) and all(len(v) == 2 for v in seen.values())
    assert all(
        ROUTING.lower() not in r["headers"] for r in eng.requests() if r["path"] != "/generate"
    )

    eng.reset()
    eng.script(mode="tool_agent", tool_calls=1)
    asyncio.run(go(routing_key_header="X-data-parallel-rank", routing_key_buckets=4))
    ranks = [r["headers"]["x-data-parallel-rank"] for r in generates(eng)]
    assert len(ranks) == 6 and set(ranks) <= {"0", "1", "2", "3"}
    c = fasttito.Client(
        eng.v1_url, MODEL, routing_key_header="X-data-parallel-rank", routing_key_buckets=4
    )
    assert c.routing_headers("group-7/sample-0") == c.routing_headers("group-7/sample-0")

    eng.reset()
    eng.script(mode="tool_agent", tool_calls=1)
    asyncio.run(go())
    assert all(ROUTING.lower() not in r["headers"] for r in eng.requests())
    for bad in (
        {"routing_key_header": "bad header"},
        {"routing_key_buckets": 2},
        {"routing_key_header": "X-a", "routing_key_buckets": 0},
    ):
        with pytest.raises(fasttito.ConfigError):
            fasttito.Client(eng.v1_url, MODEL, **bad)
    with pytest.raises(fasttito.ConfigError):
        fasttito.Client(eng.v1_url, MODEL).rollout(routing_key="")


# --------------------------------------------------------------------------- 1,000 rollouts


def test_thousand_concurrent_rollouts_through_one_client(
    eng: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    """1,000 two-turn tool rollouts at once (a GRPO group's shape: one prompt, many samples),
    each with its own routing key; every turn exact and every request keyed to its rollout."""
    eng.script(mode="tool_agent", tool_calls=1)
    n = 1000

    async def go() -> list[tuple[str, list[fasttito.Turn]]]:
        async with client_for(eng, tok, routing_key_header=ROUTING) as c:

            async def one() -> tuple[str, list[fasttito.Turn]]:
                r = c.rollout()
                turns, _ = await tool_rollout(c, 2, rollout=r)
                return r.routing_key, turns

            return await asyncio.gather(*(one() for _ in range(n)))

    results = asyncio.run(go())
    recs = generates(eng)
    assert len(recs) == 2 * n and all(r["status"] == 200 for r in recs)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for rec in recs:
        by_key.setdefault(rec["headers"][ROUTING.lower()], []).append(rec)
    assert len(by_key) == n
    ref = results[0][1]
    for key, turns in results:
        sent = by_key[key]
        assert [r["body"]["input_ids"] for r in sent] == [list(t.prompt_ids) for t in turns]
        assert [list(t.prompt_ids) for t in turns] == [list(t.prompt_ids) for t in ref]
        assert turns[1].mode == "tito" and turns[1].content == "Final answer after 1 tool calls."
        head = len(turns[0].prompt_ids) + len(turns[0].completion_ids)
        # its own first turn is cached, and every rollout sends the same ids: at least that
        assert head - 1 <= (turns[1].cached_tokens or 0) <= len(turns[1].prompt_ids) - 1
    m = fasttito.metrics()
    assert m["tito"] == n and m["mito"] == n


# --------------------------------------------------------------------------- the engine's wire


def test_engine_streams_cumulative_chunks_and_answers_sglang_errors(
    eng: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    eng.script(mode="text", content="Hello there, streaming.")

    async def go() -> fasttito.Turn:
        async with client_for(eng, tok) as c:
            return await c.rollout().generate([{"role": "user", "content": "hi"}])

    turn = asyncio.run(go())
    body = dict(generates(eng)[-1]["body"], stream=True)
    status, text = eng.call("POST", "/generate", body)
    assert status == 200 and isinstance(text, str)
    events = [line[len("data: ") :] for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == len(turn.completion_ids)
    for k, chunk in enumerate(chunks, start=1):
        assert chunk["output_ids"] == list(turn.completion_ids)[:k]  # cumulative
        last = k == len(chunks)
        assert (chunk["meta_info"]["finish_reason"] is None) != last
    # fasttito sends no_stop_trim and skip_special_tokens false: the stop token stays in the text
    assert chunks[-1]["text"] == "Hello there, streaming.<|im_end|>"

    for req, want in [
        (
            {"sampling_params": {}},
            {"error": {"message": "Either text, input_ids or input_embeds should be provided."}},
        ),
        ({"input_ids": []}, {"error": {"message": "input_ids cannot be empty."}}),
    ]:
        assert eng.call("POST", "/generate", req) == (400, want)
    status, err = eng.call("POST", "/generate", {"input_ids": [1, 2], "sampling_params": {"x": 1}})
    assert status == 400 and err["object"] == "error" and err["type"] == "Bad Request"
    status, batch = eng.call(
        "POST", "/generate", {**body, "stream": False, "input_ids": [body["input_ids"]] * 2}
    )
    assert status == 200 and isinstance(batch, list) and len(batch) == 2

    async def unchecked() -> None:
        async with client_for(eng, tok, check_prompt_length=False) as c:
            await c.rollout().generate([{"role": "user", "content": "word " * 40_000}])

    with pytest.raises(fasttito.ServerError) as ei:
        asyncio.run(unchecked())
    assert ei.value.status_code == 400
    assert "is longer than the model's context length (32768 tokens)" in str(ei.value)
