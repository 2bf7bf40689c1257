"""Benchmark: chat-template render + tokenize, fasttito against transformers and `tokenizers`.

One process, interleaved rounds, medians. For agent conversations of about 4k, 16k and 64k
tokens (4, 16 and 64 turns of the coding-agent shape of docs/performance.md: a system
prompt, a task, then per turn an assistant message with reasoning and one tool call, and a tool
result cut from real source code), it times:

* ``transformers``: ``AutoTokenizer.apply_chat_template(..., tokenize=True)`` of the whole
  conversation (what a naive client pays every turn);
* ``tokenizers encode``: the `tokenizers` package encoding the already rendered text (the
  encode-only floor of a Python client);
* ``fasttito cold``: ``Tokenizer.apply_chat_template`` with chunk reuse off (``cache_bytes=0``);
* ``fasttito +1 turn``: the same call when the conversation grew by one turn since the previous
  render (the previous turns' chunks are reused; the new turn's text is unique every round).

Run on a release build: ``fasttito bench template`` (see the README's "Reproducing" section).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fasttito.bench import SuiteSkipped
from fasttito.bench._timing import fmt_ms, model_folder, peer, timeit_interleaved

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TITLE = "Chat template render + tokenize"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "Run a shell command in the repository and return its output.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string", "description": "The command."}},
                "required": ["command"],
            },
        },
    }
]


def _source_lines() -> list[str]:
    """Real code text, deterministic for a given Python version: stdlib module sources."""
    import argparse as m1
    import json.decoder as m2
    import logging as m3
    import textwrap as m4
    import unittest.case as m5

    lines: list[str] = []
    for module in (m1, m2, m3, m4, m5):
        lines.extend(inspect.getsource(module).splitlines())
    return lines


def make_conversation(turns: int, seed: int = 1234) -> list[dict[str, Any]]:
    """A coding-agent conversation with ``turns`` assistant turns, ending in a tool result."""
    lines = _source_lines()
    system = (
        "You are a careful software engineer working in a large Python repository. "
        "Use the bash tool to inspect files, run tests and make changes. Think before acting, "
        "keep changes minimal, and explain what you found. " * 8
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": "The argument parser mis-handles abbreviations of long "
            "options when two options share a prefix. Find the cause and propose a fix. " * 3,
        },
    ]
    state = seed
    pos = 0
    for turn in range(turns):
        state = (state * 1103515245 + 12345) % (1 << 31)
        n_lines = 40 + state % 120
        chunk = lines[pos : pos + n_lines]
        pos = (pos + n_lines) % max(1, len(lines) - 200)
        call_id = f"call{turn:05d}"
        reasoning = (
            f"Step {turn}: the previous output shows how the parser walks its option table. "
            "I should look at the next part of the file to see where prefixes are matched, "
            "then check the tests that cover abbreviations. " * 3
        )
        messages.append(
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": reasoning,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": "bash",
                            "arguments": json.dumps(
                                {"command": f"sed -n {pos},{pos + n_lines}p lib.py"}
                            ),
                        },
                    }
                ],
            }
        )
        body = "\n".join(f"{pos + i:6d}\t{line}" for i, line in enumerate(chunk))
        messages.append({"role": "tool", "tool_call_id": call_id, "content": body})
    return messages


def bench_model(
    model_dir: Path, sizes: list[int], min_seconds: float, min_rounds: int = 15
) -> list[dict[str, Any]]:
    tokenizers = peer("tokenizers", "test")
    AutoTokenizer = peer("transformers", "test").AutoTokenizer

    import fasttito

    kwargs: dict[str, Any] = {}
    if "llama" in model_dir.name:
        kwargs["date_string"] = "26 Jul 2024"
    hf = AutoTokenizer.from_pretrained(str(model_dir))
    raw = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    cold = fasttito.Tokenizer.from_dir(model_dir, cache_bytes=0)
    warm = fasttito.Tokenizer.from_dir(model_dir)

    rows: list[dict[str, Any]] = []
    for turns in sizes:
        base = make_conversation(turns)
        prev = base[:-2]

        # The closures below run within this iteration; the loop values they read are bound as
        # keyword-only defaults so each provably sees this size's values (ruff B023).
        def grown(i: int, *, base: list[dict[str, Any]] = base) -> list[dict[str, Any]]:
            # The newest turn (assistant call + tool result) differs every round, so its text is
            # never in the cache, as in a real rollout.
            msgs = list(base)
            msgs[-2] = {
                **msgs[-2],
                "reasoning_content": f"[round {i}] " + msgs[-2]["reasoning_content"],
            }
            msgs[-1] = {**msgs[-1], "content": f"[round {i}]\n" + msgs[-1]["content"]}
            return msgs

        text = cold.apply_chat_template(
            base, tools=TOOLS, add_generation_prompt=True, tokenize=False, **kwargs
        )
        ids = hf.apply_chat_template(
            base,
            tools=TOOLS,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
            **kwargs,
        )
        mine = cold.apply_chat_template(base, tools=TOOLS, add_generation_prompt=True, **kwargs)
        if mine != ids:
            raise AssertionError(
                f"{model_dir.name}: fasttito ids differ from transformers at {turns} turns"
            )

        def run_hf(i: int, *, grown: Callable[[int], list[dict[str, Any]]] = grown) -> None:
            hf.apply_chat_template(
                grown(i),
                tools=TOOLS,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
                **kwargs,
            )

        def run_raw(i: int, *, text: str = text) -> None:
            raw.encode(f"[round {i}]" + text, add_special_tokens=False)

        def run_cold(i: int, *, grown: Callable[[int], list[dict[str, Any]]] = grown) -> None:
            cold.apply_chat_template(grown(i), tools=TOOLS, add_generation_prompt=True, **kwargs)

        def run_plus_one(i: int, *, grown: Callable[[int], list[dict[str, Any]]] = grown) -> None:
            warm.apply_chat_template(grown(i), tools=TOOLS, add_generation_prompt=True, **kwargs)

        # The previous turn was rendered before, as a client does every turn.
        warm.apply_chat_template(prev, tools=TOOLS, add_generation_prompt=True, **kwargs)
        medians = timeit_interleaved(
            {
                "transformers": run_hf,
                "tokenizers encode": run_raw,
                "fasttito cold": run_cold,
                "fasttito +1 turn": run_plus_one,
            },
            min_rounds=min_rounds,
            min_seconds=min_seconds,
        )
        hf_t = medians["transformers"]
        rows.append(
            {
                "model": model_dir.name,
                "turns": turns,
                "prompt tokens": len(ids),
                "text": f"{len(text.encode()) / 1e3:.1f} kB",
                "transformers apply_chat_template": fmt_ms(hf_t),
                "tokenizers encode only": fmt_ms(medians["tokenizers encode"]),
                "fasttito cold (vs transformers)": f"{fmt_ms(medians['fasttito cold'])} "
                f"({hf_t / medians['fasttito cold']:.1f}x)",
                "fasttito +1 turn (vs transformers)": f"{fmt_ms(medians['fasttito +1 turn'])} "
                f"({hf_t / medians['fasttito +1 turn']:.1f}x)",
                "_turns": turns,
                "_series": {
                    f"{model_dir.name} transformers": hf_t,
                    f"{model_dir.name} fasttito +1 turn": medians["fasttito +1 turn"],
                },
            }
        )
    return rows


def versions() -> str:
    import sys

    import fasttito._core as core

    tokenizers = peer("tokenizers", "test")
    transformers = peer("transformers", "test")
    return (
        f"fasttito {core.__version__} ({core.build_profile}), transformers "
        f"{transformers.__version__}, tokenizers {tokenizers.__version__}, Python "
        f"{sys.version.split()[0]}, GC on"
    )


def measure(
    quick: bool,
    turns: list[int] | None = None,
    models: list[str] | None = None,
    seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Rows of the render + tokenize table. Default models: the vendored qwen2.5, then qwen3 and
    llama-3.2 from ``$FASTTITO_MODELS`` (the model matrix) when present; ``quick``: qwen2.5
    only, 2 and 4 turns, a few rounds."""
    peer("transformers", "test")
    if models:
        folders = [Path(m) for m in models]
    else:
        folders = [model_folder("qwen2.5")]
        if not quick:
            for name in ("qwen3", "llama-3.2"):
                try:
                    folders.append(model_folder(name))
                except SuiteSkipped:  # optional extra models
                    pass
    sizes = turns or ([2, 4] if quick else [4, 16, 64])
    min_seconds = seconds if seconds is not None else (0.05 if quick else 2.0)
    rows: list[dict[str, Any]] = []
    for folder in folders:
        rows += bench_model(folder, sizes, min_seconds, min_rounds=3 if quick else 15)
    return rows
