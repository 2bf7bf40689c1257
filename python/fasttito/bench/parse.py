"""Benchmark: response parsing and request bodies, fasttito against the Python paths.

One process, release build, medians, GC on (each candidate in its own block). Response: a vLLM
chat completion as vLLM writes it (compact JSON) with N completion tokens, logprob entries
`{token, logprob, bytes, top_logprobs}` (top_logprobs 0 or 5) and 16,384 prompt ids
(docs/performance.md, "Response parsing and request bodies"). Candidates, each ending with the
completion ids, the prompt ids and one logprob per id:

* ``openai-python``: ``ChatCompletion.model_validate_json`` + verifiers' ``parse_tokens``
  extraction (verifiers 0.3.1's path);
* ``json``: ``json.loads`` + dict extraction;
* ``orjson``: ``orjson.loads`` + dict extraction (the best a Python client can do);
* ``fasttito``: ``fasttito.parse_response(body, "vllm-chat")`` (ids as ``TokenIds``, logprobs as
  a list of floats).

SGLang: a native ``/generate`` response (docs/wire.md S: ``output_ids`` and
``meta_info.output_token_logprobs`` entries ``[logprob, id, null]``, ``output_top_logprobs`` when
``top_logprobs_num`` is 5) with N output tokens. Peers: ``json.loads`` / ``orjson.loads`` and the
extraction slime and AReaL do (ids from ``output_ids``, logprobs from the entries' first
element, ``cached_tokens``), against ``fasttito.parse_response(body, "sglang")`` (which also
checks every entry's id against ``output_ids``).

Completion decoding: ``Tokenizer.decode`` of 1k and 8k sampled ids (Qwen2.5, English and code
text with special tokens) against the ``tokenizers`` package's ``decode``: the text every
``Rollout.complete`` decodes to find the message and its tool calls.

Request bodies: ``orjson.dumps`` of a generate body with a list of 16k/64k ids against
``_core.request_body`` from ``TokenIds`` (no Python list at all) and from a list.

Every candidate's output is checked equal to orjson's extraction before anything is timed. The
summary prints issue 17's goals with pass/miss (:data:`GOALS`): fasttito at least 8x faster than
``orjson.loads`` + extraction on the 8k-token bodies, at least 3x on the 1k-token body that is
mostly ids. ``MB/s`` is the body size over fasttito's median time.

Run: ``fasttito bench parse``.
"""

# ruff: noqa: B023 -- every timed lambda runs inside its own loop iteration (timeit_blocks)

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from typing import Any, cast

from fasttito.bench._timing import model_folder, peer, timeit_blocks

TITLE = (
    "Response parsing and request bodies (vLLM chat completion, 16,384 prompt ids; SGLang "
    "/generate)"
)

#: (completion tokens, top_logprobs, minimum speed-up over orjson + extract) on the vLLM chat
#: body (issue 17): the 8k-token body with logprobs (one entry per token, 16k prompt ids) at
#: least 8x; the bodies that are mostly ids (1k completion tokens) at least 3x; the 8k body
#: with 5 top logprobs per token at least 8x.
GOALS: tuple[tuple[int, int, float], ...] = ((8192, 0, 8.0), (1024, 0, 3.0), (8192, 5, 8.0))


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """One line per goal of :data:`GOALS` that was measured: the ratio, the goal, pass/miss."""
    out = []
    for n, top, goal in GOALS:
        for r in rows:
            if r.get("completion tokens") == n and r.get("top_logprobs") == top:
                ratio = r["_orjson"] / r["_fasttito"]
                verdict = "pass" if ratio >= goal else "miss"
                out.append(
                    f"goal: {n:,} completion tokens, top_logprobs {top} ({r['JSON']}): "
                    f"{ratio:.1f}x orjson + extract, {r['MB/s']} MB/s (goal >= {goal:g}x): "
                    f"{verdict}"
                )
    return out


def check(what: str, got: Any, want: Any) -> None:
    """Raises when a candidate's output differs from the reference extraction (before timing:
    a benchmark of a wrong answer is no benchmark)."""
    if got != want:
        raise AssertionError(f"{what}: fasttito's output differs from orjson's extraction")


def response(n: int, top: int, prompt: int = 16384, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    ids = [rng.randrange(151000) for _ in range(n)]

    def entry(i: int) -> dict[str, Any]:
        text = f"t{i % 977}"
        e: dict[str, Any] = {
            "token": text,
            "logprob": round(-rng.random() * 5, 6),
            "bytes": list(text.encode()),
        }
        e["top_logprobs"] = [
            {"token": f"a{j}", "logprob": round(-rng.random() * 8, 6), "bytes": [97, 48 + j]}
            for j in range(top)
        ]
        return e

    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1760000000,
        "model": "Qwen/Qwen3-8B",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "x" * (n * 4),
                    "refusal": None,
                    "tool_calls": [],
                    "reasoning_content": None,
                },
                "logprobs": {"content": [entry(i) for i in range(n)]},
                "finish_reason": "length",
                "stop_reason": None,
                "token_ids": ids,
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n},
        "prompt_token_ids": [rng.randrange(151000) for _ in range(prompt)],
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def sglang_response(n: int, top: int, prompt: int = 16384, seed: int = 7) -> bytes:
    """An SGLang ``/generate`` body as SGLang 0.5.23 writes it (docs/wire.md S)."""
    rng = random.Random(seed)
    ids = [rng.randrange(151000) for _ in range(n)]
    lps = [round(-rng.random() * 5, 6) for _ in range(n)]
    meta: dict[str, Any] = {
        "id": "6f75475f0b4c48febaf1d97b454417af",
        "finish_reason": {"type": "length", "length": n},
        "prompt_tokens": prompt,
        "weight_version": "default",
        "input_token_logprobs": [],
        "output_token_logprobs": [[lp, t, None] for lp, t in zip(lps, ids, strict=True)],
        "completion_tokens": n,
        "cached_tokens": prompt - 1,
        "weight_versions": [{"version": "default", "start": 0, "end": n}],
        "cached_tokens_details": None,
        "dp_rank": None,
        "e2e_latency": 1.867,
    }
    if top:
        meta["output_top_logprobs"] = [
            [[lp, t, None]]
            + [
                [round(lp - rng.random() * 3, 6), rng.randrange(151000), None]
                for _ in range(top - 1)
            ]
            for lp, t in zip(lps, ids, strict=True)
        ]
    body = {"text": "x" * (n * 4), "output_ids": ids, "meta_info": meta}
    return json.dumps(body, separators=(",", ":")).encode()


def ms(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s >= 1e-4 else f"{s * 1e6:.0f} µs"


def versions() -> str:
    from fasttito import _core

    orjson = peer("orjson")
    return (
        f"fasttito {_core.__version__} ({_core.build_profile}), orjson {orjson.__version__}, "
        f"Python {sys.version.split()[0]}"
    )


def measure(quick: bool) -> list[dict[str, Any]]:
    """Rows of the response-parsing table, then of the request-body table (their columns
    differ: the command prints one table per column set). ``quick``: the smallest sizes."""
    orjson = peer("orjson")
    ChatCompletion = peer("openai.types.chat").ChatCompletion

    import fasttito
    from fasttito import _core

    sizes = (1024,) if quick else (1024, 8192, 32768)
    request_sizes = (16384,) if quick else (16384, 65536)
    min_seconds, min_rounds = (0.05, 3) if quick else (1.5, 10)
    rows: list[dict[str, Any]] = []

    def extract(d: dict[str, Any]) -> tuple[list[int], list[int], list[float]]:
        c = d["choices"][0]
        return (
            c["token_ids"],
            d["prompt_token_ids"],
            [e["logprob"] for e in c["logprobs"]["content"]],
        )

    def via_openai(body: bytes) -> Any:
        r = ChatCompletion.model_validate_json(body)
        choice = r.choices[0]
        ids = choice.model_extra["token_ids"]
        prompt = r.model_extra["prompt_token_ids"]
        return ids, prompt, [c.logprob for c in choice.logprobs.content]

    def via_fasttito(body: bytes) -> Any:
        p = fasttito.parse_response(body, "vllm-chat")
        return p.completion_ids, p.prompt_ids, p.completion_logprobs

    for n in sizes:
        for top in (0, 5):
            body = response(n, top)
            a, b = via_fasttito(body), extract(orjson.loads(body))
            check(f"vllm-chat {n}/{top}", (list(a[0]), list(a[1]), a[2]), b)
            check(f"openai {n}/{top}", via_openai(body), b)
            m = timeit_blocks(
                {
                    "openai": lambda _: via_openai(body),
                    "json": lambda _: extract(json.loads(body)),
                    "orjson": lambda _: extract(orjson.loads(body)),
                    "fasttito": lambda _: via_fasttito(body),
                },
                min_rounds,
                min_seconds,
            )
            rows.append(
                {
                    "completion tokens": n,
                    "top_logprobs": top,
                    "JSON": f"{len(body) / 1e6:.2f} MB",
                    "openai-python + parse_tokens": ms(m["openai"]),
                    "json + extract": ms(m["json"]),
                    "orjson + extract": ms(m["orjson"]),
                    "fasttito": ms(m["fasttito"]),
                    "MB/s": f"{len(body) / m['fasttito'] / 1e6:.0f}",
                    "vs openai-python": f"{m['openai'] / m['fasttito']:.1f}x",
                    "vs orjson": f"{m['orjson'] / m['fasttito']:.1f}x",
                    "_orjson": m["orjson"],
                    "_fasttito": m["fasttito"],
                }
            )

    def sgl_extract(d: dict[str, Any]) -> tuple[list[int], list[float], int]:
        meta = d["meta_info"]
        return d["output_ids"], [e[0] for e in meta["output_token_logprobs"]], meta["cached_tokens"]

    def sgl_fasttito(body: bytes) -> Any:
        p = fasttito.parse_response(body, "sglang")
        return p.completion_ids, p.completion_logprobs, p.cached_tokens

    for n in sizes:
        for top in (0, 5):
            body = sglang_response(n, top)
            got, want = sgl_fasttito(body), sgl_extract(orjson.loads(body))
            check(f"sglang {n}/{top}", (list(got[0]), got[1], got[2]), want)
            m = timeit_blocks(
                {
                    "json": lambda _: sgl_extract(json.loads(body)),
                    "orjson": lambda _: sgl_extract(orjson.loads(body)),
                    "fasttito": lambda _: sgl_fasttito(body),
                },
                min_rounds,
                min_seconds,
            )
            rows.append(
                {
                    "SGLang output tokens": n,
                    "top_logprobs_num": top,
                    "JSON": f"{len(body) / 1e6:.2f} MB",
                    "json + extract": ms(m["json"]),
                    "orjson + extract": ms(m["orjson"]),
                    "fasttito (checked)": ms(m["fasttito"]),
                    "MB/s": f"{len(body) / m['fasttito'] / 1e6:.0f}",
                    "vs json": f"{m['json'] / m['fasttito']:.1f}x",
                    "vs orjson": f"{m['orjson'] / m['fasttito']:.1f}x",
                }
            )
    folder = model_folder("qwen2.5")
    hf = peer("tokenizers").Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok = fasttito.Tokenizer.from_dir(folder)
    sample = tok.encode(
        "".join(
            f"<|im_start|>assistant\nStep {i}: the ünïcode café costs 4€ — see `f(x) = x**2`."
            f'<tool_call>\n{{"name": "get_weather", "arguments": {{"city": '
            f'"Zürich"}}}}\n</tool_call><|im_end|>\n'
            for i in range(400)
        )
    )
    for n in (1024,) if quick else (1024, 8192):
        ids = (sample * (n // len(sample) + 1))[:n]
        check(f"decode {n}", tok.decode(ids), hf.decode(ids, skip_special_tokens=False))
        tid = fasttito.TokenIds(ids)
        m = timeit_blocks(
            {
                "tokenizers": lambda _: hf.decode(ids, skip_special_tokens=False),
                "fasttito": lambda _: tok.decode(cast(Sequence[int], tid)),
            },
            min_rounds,
            min_seconds,
        )
        rows.append(
            {
                "decoded ids": n,
                "tokenizers decode": ms(m["tokenizers"]),
                "fasttito Tokenizer.decode": ms(m["fasttito"]),
                "vs tokenizers": f"{m['tokenizers'] / m['fasttito']:.1f}x",
            }
        )
    for n in request_sizes:
        ids = [random.randrange(151000) for _ in range(n)]
        tid = fasttito.TokenIds(ids)
        sampling = {"temperature": 1.0, "top_p": 1.0}
        m = timeit_blocks(
            {
                "orjson": lambda _: orjson.dumps(
                    {
                        "model": "m",
                        "token_ids": ids,
                        "sampling_params": {**sampling, "max_tokens": 256, "logprobs": 1},
                    }
                ),
                "tid": lambda _: _core.request_body(
                    "vllm-generate",
                    "m",
                    token_ids=cast(Sequence[int], tid),
                    sampling=sampling,
                    max_tokens=256,
                ),
                "list": lambda _: _core.request_body(
                    "vllm-generate", "m", token_ids=ids, sampling=sampling, max_tokens=256
                ),
            },
            min_rounds,
            min_seconds,
        )
        rows.append(
            {
                "request ids": n,
                "orjson.dumps (list)": ms(m["orjson"]),
                "fasttito from TokenIds": f"{ms(m['tid'])} ({m['orjson'] / m['tid']:.1f}x)",
                "fasttito from list": f"{ms(m['list'])} ({m['orjson'] / m['list']:.1f}x)",
            }
        )
    return rows
