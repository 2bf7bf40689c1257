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
from engines.launch import EngineProcess, start_engine

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
    turns = [one_turn(eng, tok) for _ in range(3)]
    assert [t.null_logprobs for t in turns] == [1, 1, 1]
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
            "--rollouts", "120",
            "--concurrency", "60",
            "--fault-rate", "0.08",
            "--timeout", "3",
            "--stall", "4",
            "--deadline", "300",
        ]
    )
    result = soak.run(args)
    assert result["turns_completed"] >= 0.9 * 120 * 8, result
    assert sum(result["injected"].values()) > 20, result  # faults were in fact injected
    assert result["tito_turns"] > 0.5 * result["turns_completed"], result
    failed = [k for k, ok in result["checks"].items() if not ok]
    assert not failed, (failed, result)
