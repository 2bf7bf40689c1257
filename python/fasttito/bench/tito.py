"""Benchmark: the per-turn TITO step, fasttito against verifiers 0.3.1 and renderers 0.1.12.

One process, release build, medians (each candidate in its own block, GC on). The workload is
the coding-agent trajectory of ``bench_template.make_conversation`` (docs/performance.md),
with engine ids per turn as a template-following model samples them. At turn T (T-1 steps in
the trajectory, a new tool result to bridge) it times:

* ``verifiers get_prompt_ids``: verifiers 0.3.1's ``OpenAIChatCompletionsTokenClient
  .get_prompt_ids`` with its two ``/tokenize`` calls served in process by transformers'
  ``apply_chat_template`` (no network), over a trajectory of ``vf.Message`` Pydantic objects;
* ``verifiers prefix match``: the same call with tokenize stubbed (the pure-Python part);
* ``renderers bridge``: renderers 0.1.12 ``Qwen3Renderer.bridge_to_next_turn``;
* ``fasttito turn``: ``TrajectoryRollouts.prompt_ids`` on the same verifiers trajectory: ingest
  the newest step, match, bridge (local render + tokenize), stitch;
* ``fasttito prefix match``: ``Rollout.begin`` (match and checks, no tokenization);
* ``fasttito bridge``: ``Rollout.prepare`` on a rollout whose previous turn matches;
* ``encode floor``: the `tokenizers` crate encoding only the new tool text (through fasttito).

Run: ``fasttito bench tito`` (README, "Reproducing").
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from fasttito.bench._timing import model_folder, peer, timeit_blocks, us
from fasttito.bench.template import TOOLS, make_conversation

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TITLE = "The per-turn TITO step (Qwen3 tokenizer, coding-agent trajectory)"


def versions() -> str:
    import fasttito._core as core

    vf = peer("verifiers")
    transformers = peer("transformers", "test")
    return (
        f"fasttito {core.__version__} ({core.build_profile}), verifiers {vf.__version__}, "
        f"renderers 0.1.12, transformers {transformers.__version__}, Qwen3 tokenizer, "
        f"Python {sys.version.split()[0]}"
    )


def summary(rows: list[dict[str, Any]]) -> list[str]:
    if len(rows) < 2:
        return []
    lo, hi = rows[0], rows[-1]
    ft_growth = hi["_series"]["fasttito turn"] / lo["_series"]["fasttito turn"]
    vf_key = "verifiers get_prompt_ids"
    vf_growth = hi["_series"][vf_key] / lo["_series"][vf_key]
    return [
        f"Per-turn cost growth, fasttito turn at T={hi['_turns']} / T={lo['_turns']}: "
        f"{ft_growth:.2f}x (verifiers: {vf_growth:.2f}x)"
    ]


def measure(quick: bool, turns: list[int] | None = None) -> list[dict[str, Any]]:
    """Rows of the TITO table for turn counts ``turns`` (default 4, 16, 64; ``quick``: 2, 4
    with a few rounds)."""
    import fasttito

    peer("verifiers")
    peer("renderers")
    transformers = peer("transformers", "test")
    import renderers  # noqa: F401
    import verifiers as vf
    from renderers import Qwen3RendererConfig, create_renderer
    from verifiers.legacy import types as vft
    from verifiers.legacy.clients.openai_chat_completions_token_client import (
        OpenAIChatCompletionsTokenClient,
    )

    model_dir = model_folder("qwen3")
    min_rounds, min_seconds, turn_seconds = (3, 0.05, 0.1) if quick else (20, 3.0, 2.0)
    transformers.logging.set_verbosity_error()
    hf = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    tok = fasttito.Tokenizer.from_dir(model_dir)
    renderer = create_renderer(hf, Qwen3RendererConfig())
    turns_list = turns or ([2, 4] if quick else [4, 16, 64])
    conversation = make_conversation(max(turns_list))
    # Engine ids: prompt rendered with the generation prompt; completion = the assistant turn as
    # the template renders it, up to <|im_end|> (fasttito's render is transformers', proven by
    # the parity suite; it is used here only to build the workload quickly).
    stop = "<|im_end|>"

    def to_vf(m: dict[str, Any]) -> Any:
        if m["role"] == "system":
            return vft.SystemMessage(content=m["content"])
        if m["role"] == "user":
            return vft.UserMessage(content=m["content"])
        if m["role"] == "tool":
            return vft.ToolMessage(tool_call_id=m["tool_call_id"], content=m["content"])
        calls = [
            vft.ToolCall(
                id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"]
            )
            for c in m["tool_calls"]
        ]
        return vft.AssistantMessage(
            content=m.get("content"), reasoning_content=m.get("reasoning_content"), tool_calls=calls
        )

    vf_messages = [to_vf(m) for m in conversation]
    # Assistant messages sit at odd positions after system + user: index 2, 4, ...
    steps: list[dict[str, Any]] = []
    for i in range(2, len(conversation), 2):
        prompt = conversation[:i]
        prompt_text = tok.apply_chat_template(
            prompt, tools=TOOLS, add_generation_prompt=True, tokenize=False
        )
        full_text = tok.apply_chat_template(conversation[: i + 1], tools=TOOLS, tokenize=False)
        rest = full_text[len(prompt_text) :]
        completion_ids = tok.encode(rest[: rest.index(stop) + len(stop)])
        prompt_ids = tok.encode(prompt_text)
        steps.append(
            {
                "prompt": vf_messages[:i],
                "completion": [vf_messages[i]],
                "tokens": {
                    "prompt_ids": prompt_ids,
                    "completion_ids": completion_ids,
                    "is_truncated": False,
                },
                "response": None,
            }
        )

    class InProcessTokenClient(OpenAIChatCompletionsTokenClient):  # type: ignore[misc]
        stub = False

        def __init__(self) -> None:  # no HTTP client: tokenize is served in process
            self.logger = (
                vf.logging.getLogger("bench")
                if hasattr(vf, "logging")
                else __import__("logging").getLogger("bench")
            )

        async def tokenize(self, messages, tools, model, extra_kwargs=None, **kwargs):  # type: ignore[no-untyped-def]
            if self.stub:
                return [1, 2, 3]
            extra = dict(extra_kwargs or {})
            ctk = extra.pop("chat_template_kwargs", {}) or {}
            return list(
                hf.apply_chat_template(
                    messages,
                    tools=tools,
                    add_generation_prompt=extra.get("add_generation_prompt", True),
                    tokenize=True,
                    return_dict=False,
                    **ctk,
                )
            )

    client = InProcessTokenClient()
    loop = asyncio.new_event_loop()
    rows: list[dict[str, Any]] = []
    for T in turns_list:
        k = T - 1  # steps before turn T
        trajectory = steps[:k]
        # The prompt ends with the newest tool result; its text is the same at every T, so the
        # per-turn costs compare like for like.
        new_tool = {**conversation[1 + 2 * k], "content": conversation[3]["content"]}
        prompt_dicts = [*conversation[: 1 + 2 * k], new_tool]
        vf_prompt = [
            *vf_messages[: 1 + 2 * k],
            vft.ToolMessage(tool_call_id=new_tool["tool_call_id"], content=new_tool["content"]),
        ]
        native_prompt, _ = loop.run_until_complete(client.to_native_prompt(vf_prompt))
        state = {"trajectory": trajectory, "model": "qwen3"}
        prev = steps[k - 1]["tokens"]
        assert new_tool["role"] == "tool"

        # Every closure below runs within this iteration; the loop values it reads are bound as
        # keyword-only defaults so each closure provably sees this turn's values (ruff B023).
        def vf_turn(_: int, *, state: Any = state, native_prompt: Any = native_prompt) -> None:
            client.stub = False
            assert (
                loop.run_until_complete(client.get_prompt_ids(state, native_prompt, TOOLS))
                is not None
            )

        def vf_prefix(_: int, *, state: Any = state, native_prompt: Any = native_prompt) -> None:
            client.stub = True
            loop.run_until_complete(client.get_prompt_ids(state, native_prompt, TOOLS))

        # The newest tool result is new text on every round (as in a real rollout), so no cache
        # of any candidate can serve it.
        def fresh_tool(
            i: int, who: str, *, new_tool: dict[str, Any] = new_tool, T: int = T
        ) -> dict[str, Any]:
            return {**new_tool, "content": f"[{who} T{T} round {i}] " + new_tool["content"]}

        def renderers_bridge(
            i: int, *, prev: Any = prev, fresh_tool: Callable[..., dict[str, Any]] = fresh_tool
        ) -> None:
            out = renderer.bridge_to_next_turn(
                prev["prompt_ids"],
                prev["completion_ids"],
                [fresh_tool(i, "renderers")],
                tools=TOOLS,
            )
            assert out is not None

        ft_state: dict[str, Any] = {}

        def ft_turn(
            i: int,
            *,
            ft_state: dict[str, Any] = ft_state,
            k: int = k,
            native_prompt: Any = native_prompt,
            fresh_tool: Callable[..., dict[str, Any]] = fresh_tool,
        ) -> None:
            # Steady state: the trajectory's earlier steps were ingested on earlier turns; this
            # turn ingests the newest step, then plans (untimed set-up in ft_setup below).
            traj = ft_state["traj"]
            traj.append(steps[k - 1])
            prompt = (
                native_prompt
                if i < 0
                else [
                    *native_prompt[:-1],
                    {**native_prompt[-1], "content": fresh_tool(i, "turn")["content"]},
                ]
            )
            plan = ft_state["rollouts"].prompt_ids(traj, prompt, TOOLS)
            assert plan.mode == "tito", plan.fallback_reason
            ft_state["result"] = plan.prompt_ids

        # The previous turn's prompt, as verifiers rebuilt it then (new dicts, same strings).
        previous_native, _ = loop.run_until_complete(client.to_native_prompt(vf_messages[: 2 * k]))

        def ft_setup(
            *,
            ft_state: dict[str, Any] = ft_state,
            k: int = k,
            previous_native: Any = previous_native,
        ) -> None:
            # Steady state before turn T: the earlier steps ingested and the previous turn
            # planned, as a real rollout did on its previous turns.
            rollouts = fasttito.TrajectoryRollouts(tok)
            traj = list(steps[: k - 1])
            if k > 1:
                rollouts.prompt_ids(traj, previous_native, TOOLS)
            else:
                rollouts.rollout_for(traj, TOOLS)
            ft_state.update(rollouts=rollouts, traj=traj)

        rollout = fasttito.TrajectoryRollouts(tok).rollout_for(list(trajectory), TOOLS)

        def ft_prefix(_: int, *, rollout: Any = rollout, prompt_dicts: Any = prompt_dicts) -> None:
            assert isinstance(rollout.begin(prompt_dicts, TOOLS), fasttito.PendingBridge)

        def ft_bridge(
            i: int,
            *,
            rollout: Any = rollout,
            prompt_dicts: Any = prompt_dicts,
            fresh_tool: Callable[..., dict[str, Any]] = fresh_tool,
        ) -> None:
            assert (
                rollout.prepare([*prompt_dicts[:-1], fresh_tool(i, "bridge")], TOOLS).mode == "tito"
            )

        def floor(i: int, *, fresh_tool: Callable[..., dict[str, Any]] = fresh_tool) -> None:
            tok.encode(fresh_tool(i, "floor")["content"])

        # fasttito turn needs a fresh (k-1)-step rollout each round: set it up outside the timer.
        turn_samples: list[float] = []
        ft_setup()
        ft_turn(-1)
        expected = list(
            hf.apply_chat_template(
                prompt_dicts,
                tools=TOOLS,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        )
        assert ft_state["result"] == expected, "fasttito's stitched ids differ from transformers"
        t_end = time.perf_counter() + turn_seconds
        while time.perf_counter() < t_end or len(turn_samples) < min_rounds:
            ft_setup()
            t0 = time.perf_counter()
            ft_turn(len(turn_samples))
            turn_samples.append(time.perf_counter() - t0)
        m = timeit_blocks(
            {
                "vf_turn": vf_turn,
                "vf_prefix": vf_prefix,
                "renderers": renderers_bridge,
                "ft_prefix": ft_prefix,
                "ft_bridge": ft_bridge,
                "floor": floor,
            },
            min_rounds,
            min_seconds,
        )
        m["ft_turn"] = statistics.median(turn_samples)
        rows.append(
            {
                "turn T": T,
                "prompt tokens": len(expected),
                "verifiers get_prompt_ids": us(m["vf_turn"]),
                "fasttito turn (vs verifiers)": (
                    f"{us(m['ft_turn'])} ({m['vf_turn'] / m['ft_turn']:.0f}x)"
                ),
                "verifiers prefix match": us(m["vf_prefix"]),
                "fasttito prefix match (vs verifiers)": (
                    f"{us(m['ft_prefix'])} ({m['vf_prefix'] / m['ft_prefix']:.0f}x)"
                ),
                "renderers bridge": us(m["renderers"]),
                "fasttito bridge (vs renderers)": (
                    f"{us(m['ft_bridge'])} ({m['renderers'] / m['ft_bridge']:.1f}x)"
                ),
                "encode floor (fasttito bridge / floor)": (
                    f"{us(m['floor'])} ({m['ft_bridge'] / m['floor']:.2f}x)"
                ),
                "_turns": T,
                "_series": {
                    "verifiers get_prompt_ids": m["vf_turn"],
                    "fasttito turn": m["ft_turn"],
                    "renderers bridge": m["renderers"],
                    "fasttito bridge": m["ft_bridge"],
                },
            }
        )
    loop.close()
    return rows
