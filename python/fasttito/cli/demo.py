"""``fasttito demo``: a multi-turn, tool-using agent rollout over every transport, against local
engines started for the occasion, with a per-turn table of what TITO did.

The engines are :mod:`fasttito.testing`'s: the vLLM-compatible engine (always; it serves the
``vllm-generate``, ``vllm-chat-tokens`` and ``chat`` transports), the SGLang-compatible engine
(``sglang-generate``, SGLang's native ``/generate``; its prefix cache reports the cached tokens
of every turn) and the real NVIDIA Dynamo frontend with a scripted engine (``dynamo-nvext``,
when ``ai-dynamo`` is installed). All
answer with the model's own chat-template rendering of a scripted tool-calling agent, so the
rollout is deterministic and needs no GPU and no weights.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fasttito
from fasttito import _core
from fasttito.cli._output import progress, text_table
from fasttito.cli._sample import TOOLS

__all__ = ["DEFAULT_MODEL", "add_parser", "run"]

DEFAULT_MODEL = Path("models") / "qwen2.5"
VLLM_TRANSPORTS = ("vllm-generate", "vllm-chat-tokens", "chat")
SERVED = "fasttito-demo"

SYSTEM = "You are a weather assistant. Call get_weather for every city you are asked about."
QUESTIONS = ("What is the weather in Paris and in Tokyo?", "And in Lima?")
HEADERS = (
    "turn",
    "transport",
    "mode",
    "fallback reason",
    "prompt tokens",
    "reused",
    "bridge",
    "client CPU ms",
    "cached",
    "= full render",
)

LEGEND = """
reused         prompt ids copied verbatim from earlier turns (what the engine saw and sampled)
bridge         ids rendered locally for the new tool/user messages and the generation prompt
client CPU     this process's CPU time for the turn: planning, request body, HTTP, parsing
               (the first turn also pays one-time set-up: imports, HTTP session, first render)
cached         prompt tokens the engine found in its prefix cache, where the wire reports it
               (SGLang's meta_info.cached_tokens)
= full render  the prompt ids equal the chat template's render of the whole conversation"""


@dataclass
class Row:
    turn: int
    transport: str
    mode: str
    fallback_reason: str | None
    prompt_tokens: int
    reused: int | None
    bridge: int | None
    cpu_ms: float
    exact: bool | None
    cached: int | None = None

    def cells(self) -> list[object]:
        return [
            self.turn,
            self.transport,
            self.mode,
            self.fallback_reason,
            self.prompt_tokens,
            self.reused,
            self.bridge,
            self.cpu_ms,
            self.cached,
            self.exact,
        ]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="a multi-turn TITO rollout over every transport against local engines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=None,
        help=f"model folder (default: {DEFAULT_MODEL}, the one vendored in the repository)",
    )
    p.add_argument(
        "--transport",
        action="append",
        choices=(*VLLM_TRANSPORTS, "sglang-generate", "dynamo-nvext"),
        help="run only these transports (repeatable; default: every available one)",
    )
    p.add_argument(
        "--no-dynamo", action="store_true", help="skip the Dynamo frontend even when installed"
    )
    p.add_argument(
        "--renderer",
        choices=("auto", "transformers", "fasttito"),
        default=None,
        help="what the local engines render with (default: transformers when importable)",
    )


def run(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else DEFAULT_MODEL
    if not (model / "tokenizer.json").is_file():
        where = "" if args.model else " (run it from the repository root, or pass --model DIR)"
        print(
            f"error: {model} is not a model folder: no tokenizer.json{where}. A model folder "
            "holds tokenizer.json and a chat template (tokenizer_config.json or "
            "chat_template.jinja).",
            file=sys.stderr,
        )
        return 2
    from fasttito.testing import dynamo_importable, start_dynamo, start_engine, start_sglang

    tok = fasttito.Tokenizer.from_dir(model)
    wanted = list(args.transport or [*VLLM_TRANSPORTS, "sglang-generate", "dynamo-nvext"])
    vllm_wanted = [t for t in wanted if t in VLLM_TRANSPORTS]
    dynamo_wanted = "dynamo-nvext" in wanted and not args.no_dynamo
    print(f"fasttito {fasttito.__version__} ({_core.build_profile} build), model {model}")
    rows: list[Row] = []
    notes: list[str] = []
    if vllm_wanted:
        with progress("starting fasttito's local vLLM-compatible engine on 127.0.0.1"):
            engine = start_engine(model, served_model_name=SERVED, renderer=args.renderer)
        with engine:
            print(
                f"local vLLM-compatible engine: pid {engine.pid}, {engine.v1_url}, renders with "
                f"{engine.renderer}"
            )
            engine.script(mode="tool_agent", tool_calls=2)
            for transport in vllm_wanted:
                rows += asyncio.run(_rollout(engine.v1_url, transport, tok))
        print(f"engine pid {engine.pid} stopped")
    if "sglang-generate" in wanted:
        with progress("starting fasttito's local SGLang-compatible engine on 127.0.0.1"):
            sgl = start_sglang(model, served_model_name=SERVED, renderer=args.renderer)
        with sgl:
            print(f"local SGLang-compatible engine: pid {sgl.pid}, {sgl.base_url}/generate")
            sgl.script(mode="tool_agent", tool_calls=2)
            rows += asyncio.run(_rollout(sgl.v1_url, "sglang-generate", tok))
        print(f"engine pid {sgl.pid} stopped")
    if dynamo_wanted:
        if not dynamo_importable():
            notes.append(
                "dynamo-nvext: skipped, the NVIDIA Dynamo frontend is not installed "
                "(scripts/install-dynamo.sh installs ai-dynamo 1.6.1)"
            )
        else:
            with progress("starting the NVIDIA Dynamo frontend and a scripted engine"):
                handle = start_dynamo(model, SERVED, control={"max_tool_calls": 2}, timeout=120)
            with handle:
                print(f"NVIDIA Dynamo frontend: pids {handle.pids}, {handle.openai_base_url}")
                rows += asyncio.run(_rollout(handle.openai_base_url, "dynamo-nvext", tok))
            print("Dynamo stopped")
    print()
    print(text_table(HEADERS, [r.cells() for r in rows]))
    print()
    for line in _summary(rows):
        print(line)
    for note in notes:
        print(f"note: {note}")
    print(LEGEND)
    bad = [r for r in rows if r.exact is False]
    return 1 if bad or not rows else 0


async def _rollout(base_url: str, transport: str, tok: fasttito.Tokenizer) -> list[Row]:
    """One agent rollout: two user questions, each answered after the tool calls the engine
    makes; the per-turn rows."""
    rows: list[Row] = []
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTIONS[0]},
    ]
    questions = list(QUESTIONS[1:])
    async with fasttito.Client(base_url, SERVED, transport=transport, tokenizer=tok) as client:
        rollout = client.rollout()
        for _ in range(16):  # bounded: the scripted agent answers after two calls
            cpu = time.process_time()
            turn = await rollout.generate(messages, tools=TOOLS, max_tokens=512)
            cpu_ms = (time.process_time() - cpu) * 1e3
            expected = tok.apply_chat_template(
                _as_served(messages), tools=TOOLS, add_generation_prompt=True
            )
            prompt = turn.prompt_ids.tolist() if turn.prompt_ids is not None else []
            rows.append(
                Row(
                    turn=turn.turn,
                    transport=transport,
                    mode=turn.mode,
                    fallback_reason=turn.fallback_reason,
                    prompt_tokens=len(prompt),
                    reused=turn.tokens_reused,
                    bridge=turn.bridge_tokens,
                    cpu_ms=cpu_ms,
                    exact=prompt == expected if prompt else None,
                    cached=turn.cached_tokens,
                )
            )
            messages.append(turn.message())
            if turn.tool_calls:
                for call in turn.tool_calls:
                    messages.append(_tool_result(call))
            elif questions:
                messages.append({"role": "user", "content": questions.pop(0)})
            else:
                break
    return rows


def _as_served(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as vLLM and Dynamo render it: tool-call ``arguments`` JSON strings
    (the OpenAI shape a chat response carries) parsed into objects, as vLLM does before
    rendering."""
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if calls:
            parsed = []
            for c in calls:
                fn = dict(c.get("function") or {})
                if isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.loads(fn["arguments"] or "{}")
                parsed.append({**c, "function": fn})
            m = {**m, "tool_calls": parsed}
        out.append(m)
    return out


def _tool_result(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            args = {"raw": args}
    return {
        "role": "tool",
        "tool_call_id": call.get("id", ""),
        "content": json.dumps({"request": args, "temp_c": 18, "sky": "clear"}),
    }


def _summary(rows: Sequence[Row]) -> list[str]:
    out = []
    for transport in dict.fromkeys(r.transport for r in rows):
        mine = [r for r in rows if r.transport == transport]
        tito = [r for r in mine if r.mode == "tito"]
        reasons: dict[str, int] = {}
        for r in mine:
            if r.fallback_reason:
                reasons[r.fallback_reason] = reasons.get(r.fallback_reason, 0) + 1
        why = ", ".join(f"{k} x{v}" for k, v in reasons.items()) or "none"
        reused = sum(r.reused or 0 for r in mine)
        sent = sum(r.prompt_tokens for r in mine)
        exact = sum(1 for r in mine if r.exact)
        out.append(
            f"{transport}: {len(mine)} turns, {len(tito)} token-in (TITO), fallbacks: {why}; "
            f"{reused:,} of {sent:,} prompt ids reused verbatim; {exact}/{len(mine)} prompts "
            "equal the full render"
        )
    return out
