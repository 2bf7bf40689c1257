"""fasttito's ``dynamo-nvext`` against NVIDIA Dynamo 1.6.1 with its own vLLM worker
(``python -m dynamo.vllm``, vLLM 0.31 on CPU) behind the real frontend: what users deploy.

The oracle is vLLM's own report through ``nvext.extra_fields: ["engine_data"]``: the prompt ids
the engine ran, the completion ids and logprobs it sampled, and ``kv_cache_hit`` (vLLM's
``num_cached_tokens``). The stack starts once per session (``real_dynamo`` in conftest.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import fasttito
from fasttito.transports import Turn
from test_real_vllm import Spy, converse


def test_token_in_turns_with_the_engines_evidence(real_dynamo: Any, smol_dir: Path) -> None:
    tok = fasttito.Tokenizer.from_dir(smol_dir)

    async def main(transport: str) -> tuple[list[Turn], Spy]:
        async with fasttito.Client(
            real_dynamo.base_url, "smol", transport=transport, tokenizer=tok
        ) as client:
            assert client.transport == "dynamo-nvext"
            spy = Spy(client)
            turns, _ = await converse(client.rollout(), 6, cache_salt=f"rollout-{transport}")
        return turns, spy

    for transport in ("dynamo-nvext", "auto"):
        fasttito.reset_metrics()
        turns, spy = asyncio.run(main(transport))
        for k, (turn, (url, sent, got)) in enumerate(zip(turns, spy.calls, strict=True), 1):
            assert url.endswith("/v1/chat/completions")
            nvext = sent["nvext"]
            assert nvext["cache_salt"] == f"rollout-{transport}" and "cache_salt" not in sent
            engine = got["nvext"]["engine_data"]
            # what vLLM ran == what fasttito sent == the turn's prompt ids
            assert engine["prompt_token_ids"] == nvext["token_data"] == list(turn.prompt_ids or [])
            assert engine["completion_token_ids"] == list(turn.completion_ids)
            assert engine["completion_logprobs"] == turn.completion_logprobs
            if k == 1:
                assert turn.mode == "mito" and engine["kv_cache_hit"]["reused_tokens"] == 0
                continue
            prev = turns[k - 2]
            assert turn.mode == "tito", (k, turn.fallback_reason)
            head = list(prev.prompt_ids or []) + list(prev.completion_ids)
            assert list(turn.prompt_ids or [])[: len(head)] == head
            assert turn.tokens_reused == len(head)
        m = fasttito.metrics()
        assert (m["tito"], m["mito"]) == (5, 1)
        # the history re-sent under the same salt was served from vLLM's prefix cache
        reused = [
            got["nvext"]["engine_data"]["kv_cache_hit"]["reused_tokens"] for *_, got in spy.calls
        ]
        assert all(r > 0 for r in reused[1:]), reused


def test_cache_salt_reaches_the_prefix_cache(real_dynamo: Any, smol_dir: Path) -> None:
    """The same prompt under the same salt hits vLLM's prefix cache; under another salt it
    does not: nvext.cache_salt reaches the engine."""
    tok = fasttito.Tokenizer.from_dir(smol_dir)
    messages = [
        {"role": "system", "content": "You answer about salt. " * 60},
        {"role": "user", "content": "Is salt a mineral?"},
    ]

    async def hit(client: fasttito.Client, spy: Spy, salt: str) -> int:
        await client.rollout().generate(messages, max_tokens=4, cache_salt=salt)
        return int(spy.calls[-1][2]["nvext"]["engine_data"]["kv_cache_hit"]["reused_tokens"])

    async def main() -> tuple[int, int, int]:
        async with fasttito.Client(
            real_dynamo.base_url, "smol", transport="dynamo-nvext", tokenizer=tok
        ) as client:
            spy = Spy(client)
            first = await hit(client, spy, "salt-a")
            same = await hit(client, spy, "salt-a")
            other = await hit(client, spy, "salt-b")
        return first, same, other

    first, same, other = asyncio.run(main())
    assert first == 0 and other == 0 and same > 0, (first, same, other)
