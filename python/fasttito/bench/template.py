"""Benchmark: chat-template render + tokenize, fasttito against transformers and `tokenizers`.

One process, interleaved rounds, medians. For agent conversations of about 4k, 16k and 64k
tokens (4, 16 and 64 turns of the coding-agent shape in ``../shared/baselines.md``: a system
prompt, a task, then per turn an assistant message with reasoning and one tool call, and a tool
result cut from real source code), it times:

* ``transformers``: ``AutoTokenizer.apply_chat_template(..., tokenize=True)`` of the whole
  conversation (what a naive client pays every turn);
* ``tokenizers encode``: the `tokenizers` package encoding the already rendered text (the
  encode-only floor of a Python client);
* ``fasttito cold``: ``Tokenizer.apply_chat_template`` with chunk reuse off (``cache_bytes=0``);
* ``fasttito +1 turn``: the same call when the conversation grew by one turn since the previous
  render (the previous turns' chunks are reused; the new turn's text is unique every round).

Run on a release build: ``.venv/bin/python bench/bench_template.py`` (see the README's
"Reproducing" section).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

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
        {"role": "user", "content": "The argument parser mis-handles abbreviations of long "
         "options when two options share a prefix. Find the cause and propose a fix. " * 3},
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
                            "arguments": json.dumps({"command": f"sed -n {pos},{pos + n_lines}p lib.py"}),
                        },
                    }
                ],
            }
        )
        body = "\n".join(f"{pos + i:6d}\t{line}" for i, line in enumerate(chunk))
        messages.append({"role": "tool", "tool_call_id": call_id, "content": body})
    return messages


def timeit(fns: dict[str, Callable[[int], Any]], min_rounds: int, min_seconds: float) -> dict[str, float]:
    """Median seconds per call of each function, interleaved round by round."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up
        for r in range(2):
            fn(-1 - r)
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - start < min_seconds:
        order = list(fns.items())
        order = order[rounds % len(order) :] + order[: rounds % len(order)]
        for name, fn in order:
            t0 = time.perf_counter()
            fn(rounds)
            samples[name].append(time.perf_counter() - t0)
        rounds += 1
        if rounds >= 2000:
            break
    return {name: statistics.median(v) for name, v in samples.items()}


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms"


def bench_model(model_dir: Path, sizes: list[int], min_seconds: float) -> list[str]:
    import tokenizers
    from transformers import AutoTokenizer

    import fasttito

    kwargs: dict[str, Any] = {}
    if "llama" in model_dir.name:
        kwargs["date_string"] = "26 Jul 2024"
    hf = AutoTokenizer.from_pretrained(str(model_dir))
    raw = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    cold = fasttito.Tokenizer.from_dir(model_dir, cache_bytes=0)
    warm = fasttito.Tokenizer.from_dir(model_dir)

    rows = []
    for turns in sizes:
        base = make_conversation(turns)
        prev = base[:-2]

        def grown(i: int) -> list[dict[str, Any]]:
            # The newest turn (assistant call + tool result) differs every round, so its text is
            # never in the cache, as in a real rollout.
            msgs = list(base)
            msgs[-2] = {**msgs[-2], "reasoning_content": f"[round {i}] " + msgs[-2]["reasoning_content"]}
            msgs[-1] = {**msgs[-1], "content": f"[round {i}]\n" + msgs[-1]["content"]}
            return msgs

        text = cold.apply_chat_template(base, tools=TOOLS, add_generation_prompt=True, tokenize=False, **kwargs)
        ids = hf.apply_chat_template(base, tools=TOOLS, add_generation_prompt=True, tokenize=True, return_dict=False, **kwargs)
        mine = cold.apply_chat_template(base, tools=TOOLS, add_generation_prompt=True, **kwargs)
        if mine != ids:
            raise SystemExit(f"{model_dir.name}: fasttito ids differ from transformers at {turns} turns")

        def run_hf(i: int) -> None:
            hf.apply_chat_template(grown(i), tools=TOOLS, add_generation_prompt=True, tokenize=True, return_dict=False, **kwargs)

        def run_raw(i: int) -> None:
            raw.encode(f"[round {i}]" + text, add_special_tokens=False)

        def run_cold(i: int) -> None:
            cold.apply_chat_template(grown(i), tools=TOOLS, add_generation_prompt=True, **kwargs)

        def run_plus_one(i: int) -> None:
            warm.apply_chat_template(grown(i), tools=TOOLS, add_generation_prompt=True, **kwargs)

        # The previous turn was rendered before, as a client does every turn.
        warm.apply_chat_template(prev, tools=TOOLS, add_generation_prompt=True, **kwargs)
        medians = timeit(
            {
                "transformers": run_hf,
                "tokenizers encode": run_raw,
                "fasttito cold": run_cold,
                "fasttito +1 turn": run_plus_one,
            },
            min_rounds=15,
            min_seconds=min_seconds,
        )
        hf_t = medians["transformers"]
        rows.append(
            f"| {model_dir.name} | {turns} | {len(ids):,} | {len(text.encode()) / 1e3:.1f} kB "
            f"| {fmt_ms(hf_t)} | {fmt_ms(medians['tokenizers encode'])} "
            f"| {fmt_ms(medians['fasttito cold'])} ({hf_t / medians['fasttito cold']:.1f}x) "
            f"| {fmt_ms(medians['fasttito +1 turn'])} ({hf_t / medians['fasttito +1 turn']:.1f}x) |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="model folder (repeatable); default: the vendored qwen2.5 and ../shared/models/{qwen3,llama-3.2} when present")
    parser.add_argument("--turns", default="4,16,64", help="conversation sizes in turns")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum seconds per table cell group")
    args = parser.parse_args()

    import fasttito._core as core

    if core.build_profile != "release":
        print("error: fasttito is a debug build; benchmark a release build (scripts/bootstrap.sh release)", file=sys.stderr)
        return 1
    import tokenizers
    import transformers

    models = [Path(m) for m in args.model] if args.model else [REPO / "models" / "qwen2.5"] + [
        p for p in (REPO.parent / "shared" / "models" / "qwen3", REPO.parent / "shared" / "models" / "llama-3.2") if p.is_dir()
    ]
    print(f"fasttito {core.__version__} ({core.build_profile}), transformers {transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}, Python {sys.version.split()[0]}, GC on\n")
    print("| model | turns | prompt tokens | text | transformers apply_chat_template | tokenizers encode only | fasttito cold (vs transformers) | fasttito +1 turn (vs transformers) |")
    print("|---|---|---|---|---|---|---|---|")
    gc.collect()
    for model in models:
        bench_model(model, [int(t) for t in args.turns.split(",")], args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
