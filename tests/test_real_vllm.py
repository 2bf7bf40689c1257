"""fasttito against a running upstream vLLM 0.32 (CPU build) serving SmolLM2-135M-Instruct.

The engine's own evidence is the oracle: the prompt ids it reports having run
(``return_token_ids``), the completion ids and logprobs in its raw responses, and its prefix-cache
counters on ``/metrics``. The server starts once per session (``real_vllm`` in conftest.py);
one more, without ``--enable-scale-out``, starts for the 403 tests of this module.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fasttito
import pytest
from fasttito.transports import Turn

# Long enough that vLLM's prefix cache (full blocks only) has something to hit from turn 2.
SYSTEM = (
    "You are a careful assistant for a weather service. Answer in one short sentence. "
    + " ".join(
        f"Rule {i}: keep answers brief, polite, factual and about the weather in the city "
        "the user names, with the temperature in Celsius."
        for i in range(1, 13)
    )
)


def next_messages(k: int) -> list[dict[str, Any]]:
    """What follows the assistant's turn ``k``: a tool result on even turns, a user question on
    odd ones (the two bridge shapes), and both together on turn 5."""
    tool = {"role": "tool", "tool_call_id": f"call_{k}", "content": f"{10 + k} degrees, clear"}
    user = {"role": "user", "content": f"And in city number {k}?"}
    if k == 5:
        return [tool, user]
    return [tool] if k % 2 == 0 else [user]


class Spy:
    """Records what the Client posts and what it gets back."""

    def __init__(self, client: fasttito.Client) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        inner = client._post

        async def post(url: str, body: bytes, transport: str, **kw: Any) -> bytes:
            raw = await inner(url, body, transport, **kw)
            self.calls.append((url, json.loads(body), json.loads(raw)))
            return raw

        client._post = post  # type: ignore[method-assign]


def tokenizer(smol_dir: Path) -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(smol_dir)


async def converse(rollout: Any, turns: int, **kw: Any) -> tuple[list[Turn], list[dict[str, Any]]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    out = []
    for k in range(1, turns + 1):
        turn = await rollout.generate(messages, max_tokens=80, temperature=0.0, **kw)
        out.append(turn)
        messages.append(turn.message())
        messages.extend(next_messages(k))
    return out, messages


def check_engine_evidence(turn: Turn, response: dict[str, Any], tok: fasttito.Tokenizer) -> None:
    """The turn's ids and logprobs are the engine's, and its content is their decode."""
    choice = response["choices"][0]
    assert list(turn.completion_ids) == choice["token_ids"]
    entries = choice["logprobs"]["content"]
    assert turn.completion_logprobs == [e["logprob"] for e in entries]
    assert [e["token_id"] for e in entries] == choice["token_ids"]  # vLLM 0.32's tokens mode
    ids = list(turn.completion_ids)
    if turn.finish_reason == "stop":
        assert ids[-1] in tok.stop_token_ids
        ids = ids[:-1]
    assert turn.content == tok.decode(ids)


@pytest.mark.parametrize("transport", ["vllm-generate", "auto"])
def test_eight_turns_token_in(real_vllm: Any, smol_dir: Path, transport: str) -> None:
    tok = tokenizer(smol_dir)

    async def main() -> tuple[list[Turn], Spy, float, float]:
        before = real_vllm.metrics()
        async with fasttito.Client(
            real_vllm.base_url, "smol", transport=transport, tokenizer=tok
        ) as client:
            assert client.transport == "vllm-generate"
            spy = Spy(client)
            turns, _ = await converse(client.rollout(), 8, return_token_ids=True)
        after = real_vllm.metrics()
        hits = after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
        queries = (
            after["vllm:prefix_cache_queries_total"] - before["vllm:prefix_cache_queries_total"]
        )
        return turns, spy, hits, queries

    fasttito.reset_metrics()
    turns, spy, hits, queries = asyncio.run(main())
    assert len(spy.calls) == 8
    reused_total = 0
    for k, (turn, (url, sent, got)) in enumerate(zip(turns, spy.calls, strict=True), 1):
        assert url.endswith("/inference/v1/generate")
        # what the engine ran == what fasttito sent == the turn's prompt ids
        assert got["prompt_token_ids"] == sent["token_ids"] == list(turn.prompt_ids or [])
        check_engine_evidence(turn, got, tok)
        if k == 1:
            assert (turn.mode, turn.fallback_reason) == ("mito", "first_turn")
            continue
        prev = turns[k - 2]
        assert turn.mode == "tito", (k, turn.fallback_reason)
        head = list(prev.prompt_ids or []) + list(prev.completion_ids)
        ids = list(turn.prompt_ids or [])
        assert turn.tokens_reused == len(head) and ids[: len(head)] == head
        assert turn.tokens_reused + (turn.bridge_tokens or 0) == len(ids)
        reused_total += len(head)
    m = fasttito.metrics()
    assert (m["tito"], m["mito"], m["fallback.first_turn"]) == (7, 1, 1)
    # the engine's prefix cache served the re-sent history: vLLM counts full cached blocks, so
    # at least half of the reused tokens (blocks of 128 tokens on the CPU backend)
    assert queries > 0 and hits >= reused_total // 2, (hits, queries, reused_total)


def test_eight_turns_chat(real_vllm: Any, smol_dir: Path) -> None:
    tok = tokenizer(smol_dir)

    async def main() -> tuple[list[Turn], Spy]:
        async with fasttito.Client(
            real_vllm.base_url, "smol", transport="chat", tokenizer=tok
        ) as client:
            spy = Spy(client)
            turns, _ = await converse(client.rollout(), 8)
        return turns, spy

    turns, spy = asyncio.run(main())
    for turn, (url, sent, got) in zip(turns, spy.calls, strict=True):
        assert url.endswith("/v1/chat/completions") and "messages" in sent
        assert (turn.mode, turn.fallback_reason) == ("mito", "chat_transport")
        choice = got["choices"][0]
        assert list(turn.completion_ids) == choice["token_ids"]
        assert list(turn.prompt_ids or []) == got["prompt_token_ids"]
        assert turn.completion_logprobs == [e["logprob"] for e in choice["logprobs"]["content"]]
        assert turn.content == choice["message"]["content"]


def test_eight_turns_chat_as_a_plain_openai_server(real_vllm: Any, smol_dir: Path) -> None:
    """``chat_target="openai"``: vLLM asked without ``return_token_ids`` answers as a plain
    OpenAI server (no ids, logprobs labelled by text); the Rust chat wire keeps the logprobs,
    one per generated token, and the usage object as sent."""

    async def main() -> tuple[list[Turn], Spy]:
        async with fasttito.Client(
            real_vllm.base_url, "smol", transport="chat", chat_target="openai"
        ) as client:
            spy = Spy(client)
            turns, _ = await converse(client.rollout(), 8)
        return turns, spy

    turns, spy = asyncio.run(main())
    assert len(spy.calls) == 8
    for turn, (url, sent, got) in zip(turns, spy.calls, strict=True):
        assert url.endswith("/v1/chat/completions") and "return_token_ids" not in sent
        assert (turn.mode, turn.fallback_reason) == ("mito", "chat_transport")
        choice = got["choices"][0]
        assert choice["token_ids"] is None and list(turn.completion_ids) == []
        entries = choice["logprobs"]["content"]
        assert entries and turn.completion_logprobs == [e["logprob"] for e in entries]
        assert turn.content == choice["message"]["content"]
        assert turn.usage == got["usage"] and turn.response_id == got["id"]
        assert turn.finish_reason == choice["finish_reason"]


def test_concurrent_rollouts_through_one_client(real_vllm: Any, smol_dir: Path) -> None:
    tok = tokenizer(smol_dir)

    async def one(client: fasttito.Client, i: int) -> list[Turn]:
        rollout = client.rollout()
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Weather in city {i}?"},
        ]
        out = []
        for k in range(1, 5):
            turn = await rollout.generate(messages, max_tokens=80, temperature=0.0)
            out.append(turn)
            messages.append(turn.message())
            messages.extend(next_messages(k))
        return out

    async def main() -> list[list[Turn]]:
        async with fasttito.Client(
            real_vllm.base_url, "smol", transport="vllm-generate", tokenizer=tok
        ) as client:
            return await asyncio.gather(*(one(client, i) for i in range(16)))

    results = asyncio.run(main())
    for turns in results:
        assert [t.mode for t in turns] == ["mito", "tito", "tito", "tito"]
        for prev, turn in itertools.pairwise(turns):
            head = list(prev.prompt_ids or []) + list(prev.completion_ids)
            assert list(turn.prompt_ids or [])[: len(head)] == head


def test_top_logprobs(real_vllm: Any, smol_dir: Path) -> None:
    tok = tokenizer(smol_dir)

    async def main(transport: str) -> list[Turn]:
        async with fasttito.Client(
            real_vllm.base_url, "smol", transport=transport, tokenizer=tok
        ) as client:
            turns, _ = await converse(client.rollout(), 2, top_logprobs=3)
            plain = await client.rollout().generate(
                [{"role": "user", "content": "Hi"}], max_tokens=4
            )
            assert plain.completion_top_logprobs is None  # not asked
        return turns

    for transport in ("vllm-generate", "chat"):
        for turn in asyncio.run(main(transport)):
            top = turn.completion_top_logprobs
            assert top is not None and len(top) == len(turn.completion_ids)
            for row, token, logprob in zip(
                top, turn.completion_ids, turn.completion_logprobs or [], strict=True
            ):
                assert len(row) == 3
                # greedy: the sampled token is the most likely one
                assert row[0] == (token, pytest.approx(logprob, abs=1e-4))
                assert [lp for _, lp in row] == sorted((lp for _, lp in row), reverse=True)


def test_overlong_prompt_is_refused_before_sending(real_vllm: Any, smol_dir: Path) -> None:
    tok = tokenizer(smol_dir)
    long = [{"role": "user", "content": "weather " * 2100}]

    async def main(transport: str) -> Spy:
        async with fasttito.Client(
            real_vllm.base_url, "smol", transport=transport, tokenizer=tok
        ) as client:
            spy = Spy(client)
            with pytest.raises(fasttito.OverlongPromptError) as info:
                await client.rollout().generate(long, max_tokens=4)
            assert info.value.max_model_len == 2048 and info.value.prompt_tokens > 2048
        return spy

    for transport in ("vllm-generate", "chat", "vllm-chat-tokens"):
        assert asyncio.run(main(transport)).calls == [], transport


def test_chat_tokens_route_is_prime_rls_only(real_vllm: Any, smol_dir: Path) -> None:
    """Upstream vLLM has no /v1/chat/completions/tokens: turn 1 (messages) works, the first
    token-in turn raises a typed error that names vllm-generate."""
    tok = tokenizer(smol_dir)

    async def main() -> None:
        async with fasttito.Client(
            real_vllm.base_url, "smol", transport="vllm-chat-tokens", tokenizer=tok
        ) as client:
            rollout = client.rollout()
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Hi"}]
            first = await rollout.generate(messages, max_tokens=80, temperature=0.0)
            assert first.mode == "mito" and first.finish_reason == "stop"
            messages += [first.message(), {"role": "user", "content": "More?"}]
            with pytest.raises(fasttito.UnsupportedRouteError, match="vllm-generate") as info:
                await rollout.generate(messages, max_tokens=8)
            assert info.value.status_code == 404

    fasttito.reset_metrics()
    asyncio.run(main())
    m = fasttito.metrics()
    # the failed turn is an error, not a TITO turn
    assert (m["tito"], m["mito"], m["errors.UnsupportedRouteError"]) == (0, 1, 1)


@pytest.fixture(scope="module")
def vllm_without_scale_out() -> Iterator[Any]:
    from real_engines import require, start_vllm

    venv, model = require("FASTTITO_VLLM", "FASTTITO_SMOL")
    server = start_vllm(venv, model, scale_out=False)
    yield server
    server.stop()


def test_generate_without_scale_out_names_the_flag(
    vllm_without_scale_out: Any, smol_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tok = tokenizer(smol_dir)
    url = vllm_without_scale_out.base_url

    async def main() -> None:
        async with fasttito.Client(url, "smol", transport="vllm-generate", tokenizer=tok) as c:
            with pytest.raises(fasttito.UnsupportedRouteError, match="--enable-scale-out") as info:
                await c.rollout().generate([{"role": "user", "content": "Hi"}], max_tokens=4)
            assert info.value.status_code == 403
        # auto: never the 403 route; chat, with one warning naming the flag
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fasttito"):
            async with fasttito.Client(url, "smol", transport="auto", tokenizer=tok) as c:
                assert c.transport == "chat"
                turn = await c.rollout().generate(
                    [{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0.0
                )
                assert turn.fallback_reason == "chat_transport" and turn.completion_ids
        flagged = [r for r in caplog.records if "--enable-scale-out" in r.getMessage()]
        assert len(flagged) == 1, [r.getMessage() for r in caplog.records]

    asyncio.run(main())


def test_verifiers_client_over_the_generate_route(real_vllm: Any, smol_dir: Path) -> None:
    """verifiers 0.3.1's own token client needs prime-rl's route, which upstream vLLM lacks;
    fasttito's drop-in with ``renderer_transport="vllm_generate"`` runs a verifiers
    MultiTurnEnv against it, every turn from the second token-in."""
    import openai
    import verifiers as vf
    from datasets import Dataset
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient

    class FollowUps(vf.MultiTurnEnv):  # type: ignore[misc]
        async def env_response(self, messages: Any, state: Any, **kwargs: Any) -> Any:
            k = len(state["trajectory"])
            return [vf.UserMessage(content=f"And in city number {k}?")]

    dataset = Dataset.from_list([{"question": "Weather in Paris?", "answer": "sunny"}])
    env = FollowUps(dataset=dataset, max_turns=4)
    row = {
        "prompt": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        "example_id": 0,
        "answer": "sunny",
    }
    sampling = {"max_tokens": 80, "temperature": 0.0}

    async def main() -> list[Any]:
        client = OpenAIChatCompletionsTokenClient(
            openai.AsyncOpenAI(base_url=real_vllm.base_url, api_key="none"),
            renderer_transport="vllm_generate",
            tokenizer=smol_dir,
        )
        try:
            return list(
                await asyncio.gather(
                    *(env.rollout(dict(row), client, "smol", sampling) for _ in range(2))
                )
            )
        finally:
            await client.close()

    fasttito.reset_metrics()
    states = asyncio.run(main())
    for state in states:
        assert state.get("error") is None, state.get("error")
        trajectory = state["trajectory"]
        assert len(trajectory) == 4
        for prev, step in itertools.pairwise(trajectory):
            head = prev["tokens"]["prompt_ids"] + prev["tokens"]["completion_ids"]
            assert step["tokens"]["prompt_ids"][: len(head)] == head
    m = fasttito.metrics()
    assert (m["tito"], m["mito"]) == (6, 2), m
