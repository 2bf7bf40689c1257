"""A TITO turn of ``rollout.generate`` is two calls into ``fasttito._core``: one before HTTP
(plan the turn and write its body), one after (parse, check, decode, record). Counted with a
profiler hook (``sys.setprofile``: every ``c_call`` of a builtin of ``_core`` or of a method
bound to a ``_core`` object), per token transport, against the local test engines, so a turn
that crosses into Rust more often fails here rather than in a benchmark. Getters and slot
methods (``len()``, ``[]``) are not calls the hook sees and are not counted.

Also here: a turn's ids are views of one buffer, not copies per access."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

import fasttito
import pytest
from conftest import VENDORED_MODEL_DIR
from fasttito import _core
from fasttito.testing.launch import EngineProcess, start_engine, start_sglang

MODEL = "test-model"
#: The most calls into _core a TITO turn may make (the goal, and what it makes today, is 2).
MAX_CALLS = 3
CORE_TYPES = tuple(v for v in vars(_core).values() if isinstance(v, type))


def core_calls(run: Callable[[], Awaitable[Any]]) -> tuple[Any, Counter[str]]:
    """Runs ``run()`` (in the current event loop) and counts its calls into ``_core``."""
    calls: Counter[str] = Counter()

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event != "c_call":
            return
        owner = getattr(arg, "__self__", None)
        if owner is _core or isinstance(owner, CORE_TYPES):
            calls[getattr(arg, "__qualname__", repr(arg))] += 1

    async def counted() -> Any:
        sys.setprofile(hook)
        try:
            return await run()
        finally:
            sys.setprofile(None)

    return asyncio.get_running_loop().create_task(counted()), calls


async def tito_turn_calls(client: fasttito.Client) -> tuple[fasttito.Turn, Counter[str]]:
    """Turn 1 (MITO), then turn 2 counted; turn 2 must be TITO."""
    async with client:
        rollout = client.rollout()
        msgs: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
        first = await rollout.generate(msgs, max_tokens=32)
        msgs += [first.message(), {"role": "user", "content": "And in Rome?"}]
        task, calls = core_calls(lambda: rollout.generate(msgs, max_tokens=32))
        turn = await task
    assert turn.mode == "tito", turn
    return turn, calls


@pytest.fixture(scope="module")
def eng() -> Iterator[EngineProcess]:
    with start_engine(VENDORED_MODEL_DIR, served_model_name=MODEL) as e:
        yield e


@pytest.fixture(scope="module")
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


def test_the_hook_sees_calls_into_core(tok: fasttito.Tokenizer) -> None:
    """The counter is live: calls it should see, it sees (and getters it should not, not)."""

    async def some_calls() -> None:
        ids = fasttito.TokenIds([1, 2, 3])
        ids.max()
        _core.metrics()
        _ = tok.vocab_size, len(ids), ids[0]

    async def main() -> Counter[str]:
        task, calls = core_calls(some_calls)
        await task
        return calls

    calls = asyncio.run(main())
    assert sum(calls.values()) == 2, calls
    assert calls["TokenIds.max"] == 1 and calls["metrics"] == 1


@pytest.mark.parametrize("transport", ["vllm-generate", "vllm-chat-tokens"])
def test_a_vllm_tito_turn_is_two_calls(
    eng: EngineProcess, tok: fasttito.Tokenizer, transport: str
) -> None:
    client = fasttito.Client(eng.v1_url, MODEL, transport=transport, tokenizer=tok)
    _, calls = asyncio.run(tito_turn_calls(client))
    assert sum(calls.values()) <= MAX_CALLS, calls
    assert calls == Counter({"Rollout.plan_turn": 1, "Rollout.complete": 1}), calls


def test_an_sglang_tito_turn_is_two_calls(tok: fasttito.Tokenizer) -> None:
    with start_sglang(VENDORED_MODEL_DIR, served_model_name=MODEL) as e:
        client = fasttito.Client(e.v1_url, MODEL, transport="sglang-generate", tokenizer=tok)
        _, calls = asyncio.run(tito_turn_calls(client))
    assert sum(calls.values()) <= MAX_CALLS, calls
    assert calls == Counter({"Rollout.plan_turn": 1, "Rollout.complete": 1}), calls


def test_a_dynamo_tito_turn_is_two_calls(tok: fasttito.Tokenizer, require_dynamo: None) -> None:
    from fasttito.testing.dynamo_launch import start_dynamo

    handle = start_dynamo(VENDORED_MODEL_DIR, MODEL, timeout=60)
    try:
        client = fasttito.Client(
            handle.base_url + "/v1", MODEL, transport="dynamo-nvext", tokenizer=tok
        )
        _, calls = asyncio.run(tito_turn_calls(client))
    finally:
        handle.stop()
    assert sum(calls.values()) <= MAX_CALLS, calls
    assert calls == Counter({"Rollout.plan_turn": 1, "Rollout.complete": 1}), calls


def test_a_turns_ids_are_views_of_one_buffer(eng: EngineProcess, tok: fasttito.Tokenizer) -> None:
    client = fasttito.Client(eng.v1_url, MODEL, transport="vllm-generate", tokenizer=tok)
    turn, _ = asyncio.run(tito_turn_calls(client))
    a, b = turn.completion_ids, turn.completion_ids
    assert a is b  # one TokenIds object, not a copy per access
    va, vb = memoryview(a), memoryview(b)
    assert va.format == "I" and va.readonly and va == vb and va.tolist() == list(a)
    assert turn.prompt_ids is turn.prompt_ids
    assert turn.completion_logprobs is turn.completion_logprobs
    assert turn.tool_calls is turn.tool_calls
    assert turn.message() is turn.message()
    # the rollout's record of the turn holds the same ids, not a list made of them
    assert turn.completion_ids == list(a) and turn.prompt_ids == turn.prompt_ids.tolist()
