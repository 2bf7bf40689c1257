"""The ``fasttito`` command line.

``fasttito demo`` renders and tokenizes a sample tool-using conversation with a model folder
(the one vendored in the repository by default) and prints the text, the ids and the timings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fasttito import Tokenizer, __version__
from fasttito.errors import FasttitoError

DEFAULT_MODEL = Path("models") / "qwen2.5"

SAMPLE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

SAMPLE_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris and in Tokyo?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            },
            {
                "id": "call00002",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "東京"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call00001", "content": '{"temp_c": 18, "sky": "clear"}'},
    {"role": "tool", "tool_call_id": "call00002", "content": '{"temp_c": 24, "sky": "rain"}'},
]


def _demo(args: argparse.Namespace) -> int:
    model = Path(args.model)
    start = time.perf_counter()
    tok = Tokenizer.from_dir(model)
    load_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    text = tok.apply_chat_template(
        SAMPLE_MESSAGES, tools=SAMPLE_TOOLS, add_generation_prompt=True, tokenize=False
    )
    ids = tok.apply_chat_template(SAMPLE_MESSAGES, tools=SAMPLE_TOOLS, add_generation_prompt=True)
    render_ms = (time.perf_counter() - start) * 1e3
    print(f"fasttito {__version__}: model folder {model}")
    print(f"loaded in {load_ms:.1f} ms; stop token ids {tok.stop_token_ids}")
    print("--- rendered chat template " + "-" * 40)
    print(text, end="" if text.endswith("\n") else "\n")
    print("-" * 67)
    print(f"{len(ids)} prompt ids (render + tokenize: {render_ms:.2f} ms):")
    print(ids)
    if tok.decode(ids) != text:
        print("error: decoding the ids does not give the rendered text back", file=sys.stderr)
        return 1
    print("decode(ids) == rendered text: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fasttito`` console script."""
    parser = argparse.ArgumentParser(prog="fasttito", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fasttito {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="render and tokenize a sample conversation")
    demo.add_argument("--model", default=str(DEFAULT_MODEL), help="model folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
    except FasttitoError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
