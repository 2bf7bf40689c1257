"""The vLLM engine's command line and process lifetime (``python -m fasttito.testing.vllm_engine``).

Run::

    python -m fasttito.testing.vllm_engine --model models/qwen2.5 --port 0 \\
        [--served-model-name NAME]... [--max-model-len 32768] [--idle-timeout 300] \\
        [--api-key KEY] [--scheduling-policy priority|fcfs] [--disable-route PATH]... \\
        [--stop-token-id ID]... [--port-file FILE] [--parent-pid PID] [--version-string V] \\
        [--max-recorded-requests 10000] [--prefix-store-size 8192] [--no-scale-out] \\
        [--generate-shape tokens|labels] [--renderer auto|transformers|fasttito]

When it listens it prints ONE line on stdout, then nothing else (logs go to stderr)::

    {"event": "ready", "host": "127.0.0.1", "port": 41234, "pid": 123, "model": "qwen2.5",
     "renderer": "transformers"}

and it stops as every test engine does (``fasttito.testing.engine_core.lifecycle``).
"""

from __future__ import annotations

import argparse

from fasttito.testing.engine_core.lifecycle import (
    add_common_args,
    run_main,
    serve,
    settings_from_args,
)
from fasttito.testing.vllm_engine.model import Model
from fasttito.testing.vllm_engine.routes import build_app
from fasttito.testing.vllm_engine.state import Engine, Settings

__all__ = ["engine_from_args", "main", "parse_args", "run"]


async def run(engine: Engine, args: argparse.Namespace) -> None:
    """Serve ``engine`` until a signal, the idle timeout or the parent's death."""
    ready = {"model": engine.s.served_names[0], "renderer": engine.model.renderer}
    await serve(
        build_app(engine),
        args,
        ready,
        lambda: engine.last_activity,
        backlog=2048,
        label="test engine",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m fasttito.testing.vllm_engine",
        description="vLLM-compatible test engine (tests only)",
    )
    p.add_argument("--model", required=True, help="folder with tokenizer.json + chat template")
    add_common_args(p, version="0.20.0")
    p.add_argument("--max-model-len", type=int, default=32768)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1")
    p.add_argument(
        "--scheduling-policy",
        choices=("priority", "fcfs"),
        default="priority",
        help="fcfs: a non-zero priority is a 400, as in vLLM",
    )
    p.add_argument(
        "--no-scale-out",
        dest="scale_out",
        action="store_false",
        help="answer 403 on /inference/v1/generate, as vLLM 0.32 without --enable-scale-out",
    )
    p.add_argument(
        "--generate-shape",
        choices=("tokens", "labels"),
        default="tokens",
        help="logprob entries of /inference/v1/generate: vLLM 0.32's tokens mode (token_id, "
        "rank; prompt ids only with return_token_ids) or prime-rl's token_id:N labels",
    )
    return p.parse_args(argv)


def engine_from_args(args: argparse.Namespace) -> Engine:
    """The engine the command line describes (loads the model folder)."""
    return Engine(Model.from_args(args), settings_from_args(Settings, args))


def main(argv: list[str] | None = None) -> None:
    run_main(argv, parse_args, lambda args: run(engine_from_args(args), args))
