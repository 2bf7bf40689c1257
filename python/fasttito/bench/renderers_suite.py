"""Benchmark: ``fasttito.renderers`` against renderers 0.1.12's own renderers and ``generate``.

One process, medians (``timeit_blocks``). Workload: the coding-agent conversation of
``fasttito.bench.template.make_conversation`` at T turns, with engine ids per turn as a
template-following model samples them. Per T and model, on Qwen3 against renderers' hand-written
``Qwen3Renderer``, on Qwen2.5 against its ``DefaultRenderer`` (the fallback for a model without
a hand-written renderer):

* ``render``: the whole conversation with the generation prompt (token ids; fasttito computes
  ``message_indices``/``sampled_mask`` when first read, not here);
* ``bridge``: ``bridge_to_next_turn`` after turn T-1 with the newest tool result; the
  ``DefaultRenderer`` cannot bridge (it returns None), so its column is the full re-render its
  caller falls back to;
* ``parse``: ``parse_response`` of one assistant turn (a tool call);
* ``generate``: the client CPU of one ``generate`` call with a prebuilt (bridged) prompt, on a
  recorded ``/inference/v1/generate`` response of 256 completion ids (no network: a client whose
  ``post`` returns the recorded body), each package's ``generate`` with its own renderer.

Goals (issue 15): bridge at least 5x faster than the Qwen3 renderer at 64 turns; ``generate`` at
least 3x less client CPU per turn.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fasttito.bench._timing import model_folder, peer, timeit_blocks, us
from fasttito.bench.template import TOOLS, make_conversation

TITLE = "fasttito.renderers against renderers 0.1.12 (render, bridge, parse, generate)"

STOP_TEXT = {"qwen3": "<|im_end|>", "qwen2.5": "<|im_end|>"}


def versions() -> str:
    import renderers

    return f"renderers {getattr(renderers, '__version__', '0.1.12')}"


def summary(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if r["model"] == "qwen3" and r["turns"] == max(x["turns"] for x in rows):
            s = r["_series"]
            bridge = s["peer bridge"] / s["fasttito bridge"]
            out.append(
                f"Qwen3 at {r['turns']} turns: bridge {bridge:.1f}x faster than renderers' "
                f"Qwen3Renderer (goal 5x); generate client CPU "
                f"{s['peer generate'] / s['fasttito generate']:.1f}x less (goal 3x)"
            )
    return out


class _Recorded:
    """An ``AsyncOpenAI`` stand-in whose ``post`` returns one recorded response."""

    base_url = "http://127.0.0.1:9/v1"

    def __init__(self, body: bytes) -> None:
        import httpx

        self._response = httpx.Response(200, content=body)

    async def post(self, path: str, **_: Any) -> Any:
        return self._response


def _recorded_body(completion: list[int], n: int) -> bytes:
    ids = (completion * (n // max(1, len(completion)) + 1))[:n]
    content = [
        {"token": f"token_id:{t}", "logprob": -0.01 * (1 + i % 7)} for i, t in enumerate(ids)
    ]
    return json.dumps(
        {
            "request_id": "gen-bench",
            "choices": [
                {
                    "index": 0,
                    "token_ids": ids,
                    "logprobs": {"content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": n, "total_tokens": 1000 + n},
        },
        separators=(",", ":"),
    ).encode()


def measure(quick: bool, turns: list[int] | None = None) -> list[dict[str, Any]]:
    import fasttito

    peer("renderers")
    transformers = peer("transformers", "test")
    from renderers import DefaultRendererConfig, Qwen3RendererConfig, create_renderer
    from renderers.configs import CustomRendererConfig

    transformers.logging.set_verbosity_error()
    min_rounds, min_seconds = (3, 0.05) if quick else (5, 1.0)
    turns_list = turns or ([2, 4] if quick else [4, 16, 64])
    conversation = make_conversation(max(turns_list))
    rows: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    for name, peer_config in (
        ("qwen3", Qwen3RendererConfig()),
        ("qwen2.5", DefaultRendererConfig(tool_parser="qwen3")),
    ):
        folder = model_folder(name)
        hf = transformers.AutoTokenizer.from_pretrained(str(folder))
        tok = fasttito.Tokenizer.from_dir(folder)
        mine = create_renderer(
            hf,
            CustomRendererConfig(import_path="fasttito.renderers.Renderer", model_dir=str(folder)),
        )
        theirs = create_renderer(hf, peer_config)
        for T in turns_list:
            rows.append(
                _one(
                    T, name, folder, conversation, tok, mine, theirs, loop, min_rounds, min_seconds
                )
            )
    loop.close()
    return rows


def _one(
    T: int,
    name: str,
    folder: Any,
    conversation: list[dict[str, Any]],
    tok: Any,
    mine: Any,
    theirs: Any,
    loop: asyncio.AbstractEventLoop,
    min_rounds: int,
    min_seconds: float,
) -> dict[str, Any]:
    """One row: turn ``T`` of ``conversation`` on model ``name``."""
    from renderers.client import generate as peer_generate

    import fasttito.renderers as fr

    stop = STOP_TEXT[name]
    k = T - 1  # completed turns before turn T
    prompt_msgs = conversation[: 2 + 2 * (k - 1)] if k > 0 else conversation[:2]
    prompt_text = tok.apply_chat_template(
        prompt_msgs, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    full_text = tok.apply_chat_template(
        conversation[: len(prompt_msgs) + 1], tools=TOOLS, tokenize=False
    )
    rest = full_text[len(prompt_text) :]
    prev_prompt = tok.encode(prompt_text)
    prev_completion = tok.encode(rest[: rest.index(stop) + len(stop)])
    new_tool = conversation[len(prompt_msgs) + 1]
    whole = [*conversation[: len(prompt_msgs) + 1], new_tool]

    def fresh(i: int, who: str) -> list[dict[str, Any]]:
        # new text every round, as in a rollout: no cache serves it
        return [{**new_tool, "content": f"[{who} {T} {i}] " + new_tool["content"]}]

    def peer_bridge(i: int) -> None:
        out = theirs.bridge_to_next_turn(
            prev_prompt, prev_completion, fresh(i, "peer"), tools=TOOLS
        )
        if out is None:  # the caller's fallback: a full re-render
            theirs.render_ids(
                [*whole[:-1], *fresh(i, "peer")], tools=TOOLS, add_generation_prompt=True
            )

    def my_bridge(i: int) -> None:
        out = mine.bridge_to_next_turn(prev_prompt, prev_completion, fresh(i, "mine"), tools=TOOLS)
        assert out is not None

    body = _recorded_body(prev_completion, 256)
    client = _Recorded(body)
    bridged = mine.bridge_to_next_turn(prev_prompt, prev_completion, [new_tool], tools=TOOLS)
    assert bridged is not None
    ids = bridged.token_ids

    def gen(fn: Any, renderer: Any) -> Any:
        def run(_: int) -> None:
            loop.run_until_complete(
                fn(
                    client=client,
                    renderer=renderer,
                    messages=whole,
                    model="m",
                    prompt_ids=ids,
                    tools=TOOLS,
                    sampling_params={"max_tokens": 256},
                    max_prompt_len=1 << 30,
                )
            )

        return run

    m = timeit_blocks(
        {
            "peer render": lambda i: theirs.render(
                [*whole[:-1], *fresh(i, "pr")], tools=TOOLS, add_generation_prompt=True
            ),
            "fasttito render": lambda i: mine.render(
                [*whole[:-1], *fresh(i, "fr")], tools=TOOLS, add_generation_prompt=True
            ),
            "peer bridge": peer_bridge,
            "fasttito bridge": my_bridge,
            "peer parse": lambda _: theirs.parse_response(prev_completion, tools=TOOLS),
            "fasttito parse": lambda _: mine.parse_response(prev_completion, tools=TOOLS),
            "peer generate": gen(peer_generate, theirs),
            "fasttito generate": gen(fr.generate, mine),
        },
        min_rounds,
        min_seconds,
    )

    def cell(what: str) -> str:
        ratio = m["peer " + what] / m["fasttito " + what]
        return f"{us(m['fasttito ' + what])} ({ratio:.1f}x)"

    return {
        "model": name,
        "peer": type(theirs).__name__,
        "turns": T,
        "prompt tokens": len(ids),
        "peer render": us(m["peer render"]),
        "fasttito render (vs peer)": cell("render"),
        "peer bridge" + (" (re-render)" if name != "qwen3" else ""): us(m["peer bridge"]),
        "fasttito bridge (vs peer)": cell("bridge"),
        "peer parse": us(m["peer parse"]),
        "fasttito parse (vs peer)": cell("parse"),
        "peer generate": us(m["peer generate"]),
        "fasttito generate (vs peer)": cell("generate"),
        "_turns": T,
        "_series": dict(m),
    }
