"""The fault-injection soak (tests/soak.py) in a small version, and the engine fault modes it
relies on: each new mode reaches the client as the retry, typed error or counted fallback the
soak's accounting expects, and the engine's random faults are counted where they are applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import fasttito
import pytest
import soak
from conftest import VENDORED_MODEL_DIR
from fasttito.testing.launch import EngineProcess, start_engine

MODEL = "soak-test-model"
USER = [{"role": "user", "content": "hi"}]
GEN = "/inference/v1/generate"


@pytest.fixture(scope="module")
def eng() -> Iterator[EngineProcess]:
    with start_engine(VENDORED_MODEL_DIR, served_model_name=MODEL) as e:
        yield e


@pytest.fixture(autouse=True)
def _reset(eng: EngineProcess) -> None:
    eng.reset()
    eng.script(mode="text")


@pytest.fixture(scope="module")
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


def one_turn(eng: EngineProcess, tok: fasttito.Tokenizer, **kw: Any) -> fasttito.Turn:
    async def go() -> fasttito.Turn:
        async with fasttito.Client(
            eng.v1_url, MODEL, transport="vllm-generate", tokenizer=tok, backoff=0.01, **kw
        ) as c:
            return await c.rollout().generate(USER)

    return asyncio.run(go())


def test_stall_mid_body_times_out_and_is_retried(
    eng: EngineProcess, tok: fasttito.Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    eng.faults({"mode": "stall", "seconds": 3.0, "count": 1, "path": GEN})
    with caplog.at_level(logging.INFO, logger="fasttito"):
        turn = one_turn(eng, tok, timeout=0.5, max_retries=1)
    assert turn.content == "Hello from the test engine."
    assert [r["status"] for r in eng.requests() if r["path"] == GEN] == ["stall", 200]
    assert sum("RequestTimeoutError" in r.getMessage() for r in caplog.records) == 1
    eng.faults({"mode": "stall", "seconds": 3.0, "count": 2, "path": GEN})
    with pytest.raises(fasttito.RequestTimeoutError):
        one_turn(eng, tok, timeout=0.5, max_retries=1)


def test_http_504_is_retried(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    eng.faults({"mode": "http_504", "count": 1, "path": GEN})
    assert one_turn(eng, tok).content == "Hello from the test engine."
    eng.faults({"mode": "http_504", "count": 3, "path": GEN})
    with pytest.raises(fasttito.ServerError) as ei:
        one_turn(eng, tok, max_retries=2)
    assert ei.value.status_code == 504


@pytest.mark.parametrize("mode", ["long_logprobs", "short_logprobs"])
def test_misaligned_logprobs_are_a_parse_error(
    eng: EngineProcess, tok: fasttito.Tokenizer, mode: str
) -> None:
    eng.faults({"mode": mode, "count": 1, "path": GEN})
    with pytest.raises(fasttito.ResponseParseError, match="logprob"):
        one_turn(eng, tok)


def test_random_faults_are_counted(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    status, out = eng.call(
        "POST", "/_admin/faults", {"random": {"rate": 1.0, "modes": ["null_logprob"], "seed": 3}}
    )
    assert status == 200 and out["random"] == {"rate": 1.0, "modes": ["null_logprob"], "seed": 3}
    # a null logprob of a sampled token is a malformed generate body, raised every time
    for _ in range(3):
        with pytest.raises(fasttito.ResponseParseError, match="finite"):
            one_turn(eng, tok)
    # /v1/models is not a completion route: body faults skip it
    assert eng.call("GET", "/_admin/faults")[1]["injected"] == {"null_logprob": 3}
    status, out = eng.call("POST", "/_admin/faults", {"random": {"rate": 2, "modes": ["x"]}})
    assert status == 400
    eng.call("POST", "/_admin/faults", {"random": None})
    assert one_turn(eng, tok).null_logprobs == 0


def test_small_soak_passes() -> None:
    """The CI version of the soak: 120 rollouts of 8 turns, 60 in flight, 8% faults of every
    mode. The report's checks are the pass criteria (tests/soak.py docstring)."""
    args = soak.parse_args(
        [
            "--rollouts",
            "120",
            "--concurrency",
            "60",
            "--fault-rate",
            "0.08",
            "--timeout",
            "3",
            "--stall",
            "4",
            "--deadline",
            "300",
        ]
    )
    result = soak.run(args)
    assert result["turns_completed"] >= 0.9 * 120 * 8, result
    assert sum(result["injected"].values()) > 20, result  # faults were in fact injected
    assert result["tito_turns"] > 0.5 * result["turns_completed"], result
    failed = [k for k, ok in result["checks"].items() if not ok]
    assert not failed, (failed, result)


def test_small_soak_passes_on_sglang_generate() -> None:
    """The same soak through SGLang's native /generate against the SGLang engine: its own
    malformed bodies and aborts included, every turn with cached_tokens."""
    args = soak.parse_args(
        [
            "--transport",
            "sglang-generate",
            "--rollouts",
            "40",
            "--concurrency",
            "20",
            "--turns",
            "6",
            "--fault-rate",
            "0.1",
            "--timeout",
            "3",
            "--stall",
            "4",
            "--deadline",
            "300",
        ]
    )
    assert "abort" in args.modes and "wrong_logprob_id" in args.modes
    result = soak.run(args)
    assert result["config"]["transport"] == "sglang-generate"
    assert result["turns_completed"] >= 0.9 * 40 * 6, result
    assert sum(result["injected"].values()) > 10, result
    assert result["tito_turns"] > 0.5 * result["turns_completed"], result
    assert "abort -> EngineAbortError" in result["accounting"], result
    failed = [k for k, ok in result["checks"].items() if not ok]
    assert not failed, (failed, result)


# --------------------------------------------------------------------------- Dynamo engine faults

DYN_SERVED = "soak-dynamo"


@pytest.fixture(scope="module")
def dyn(require_dynamo: None) -> Iterator[Any]:
    from fasttito.testing.dynamo_launch import start_dynamo

    with start_dynamo(VENDORED_MODEL_DIR, DYN_SERVED, timeout=90) as h:
        yield h


def dyn_turns(dyn: Any, tok: fasttito.Tokenizer, n: int) -> list[fasttito.Turn]:
    """An n-turn tool rollout through the real Dynamo frontend."""

    async def go() -> list[fasttito.Turn]:
        async with fasttito.Client(
            dyn.openai_base_url,
            DYN_SERVED,
            transport="dynamo-nvext",
            tokenizer=tok,
            backoff=0.05,
            max_retries=2,
        ) as c:
            rollout = c.rollout()
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
            turns = []
            for _ in range(n):
                turn = await rollout.generate(messages, tools=soak.TOOLS, max_tokens=200)
                turns.append(turn)
                messages.append(turn.message())
                for tc in turn.tool_calls:
                    messages.append({"role": "tool", "tool_call_id": tc["id"], "content": "21 C"})
                if not turn.tool_calls:
                    messages.append({"role": "user", "content": "And Rome?"})
            return turns

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("knobs", "match"),
    [
        ({"oov_token_id": True}, "outside the vocabulary"),
        ({"logprobs_delta": 1}, "logprob"),
        ({"logprobs_delta": -1}, "logprob"),
    ],
)
def test_dynamo_engine_corrupt_engine_data_is_a_parse_error(
    dyn: Any, tok: fasttito.Tokenizer, knobs: dict[str, Any], match: str
) -> None:
    dyn.set_control(**knobs)
    try:
        with pytest.raises(fasttito.ResponseParseError, match=match):
            dyn_turns(dyn, tok, 1)
    finally:
        dyn.clear_control()


def test_dynamo_engine_missing_engine_data_and_stop_token(
    dyn: Any, tok: fasttito.Tokenizer
) -> None:
    # without engine_data the ids come from no channel fasttito asked for: a typed error
    dyn.set_control(drop_engine_data=True)
    try:
        with pytest.raises(fasttito.ResponseParseError):
            dyn_turns(dyn, tok, 1)
        # the stop token missing on every turn (Dynamo's SGLang backend, dyn #14302): each
        # next turn falls back, counted, and nothing misaligned comes back
        dyn.set_control(strip_stop=True, max_tool_calls=3)
        turns = dyn_turns(dyn, tok, 3)
        assert [t.fallback_reason for t in turns[1:]] == ["stop_token_missing"] * 2
        assert all(len(t.completion_logprobs or []) == len(t.completion_ids) for t in turns)
        # at a rate: some requests get the fault, the rest do not
        dyn.set_control(strip_stop=True, fault_rate=0.5, fault_seed=1, max_tool_calls=7)
        turns = dyn_turns(dyn, tok, 8)
        missing = [t.completion_ids.tolist()[-1] not in tok.stop_token_ids for t in turns]
        assert 0 < sum(missing) < 8
        assert [t.fallback_reason == "stop_token_missing" for t in turns[1:]] == missing[:-1]
    finally:
        dyn.clear_control()


def test_dynamo_engine_503_is_retried(dyn: Any, tok: fasttito.Tokenizer) -> None:
    dyn.set_control(error="http:503", fail_next=1)
    try:
        assert len(dyn_turns(dyn, tok, 1)) == 1
    finally:
        dyn.clear_control()
