"""Command line and process lifetime of the SGLang engine (``python -m
fasttito.testing.sglang_engine``); the flags are listed in the package docstring."""

from __future__ import annotations

import argparse

from fasttito.testing.engine_core.lifecycle import (
    add_common_args,
    run_main,
    serve,
    settings_from_args,
)
from fasttito.testing.sglang_engine.routes import build_app
from fasttito.testing.sglang_engine.state import EngineState, Settings
from fasttito.testing.vllm_engine.model import Model

__all__ = ["main", "parse_args", "run", "state_from_args"]


async def run(st: EngineState, args: argparse.Namespace) -> None:
    """Serve ``st`` until a signal, the idle timeout or the parent's death
    (``fasttito.testing.engine_core.lifecycle``)."""
    ready = {"model": st.s.served_names[0], "renderer": st.model.renderer, "engine": "sglang"}
    await serve(
        build_app(st),
        args,
        ready,
        lambda: st.last_activity,
        backlog=4096,
        label="sglang test engine",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m fasttito.testing.sglang_engine",
        description="SGLang-compatible test engine (tests only)",
    )
    p.add_argument("--model", "--model-path", dest="model", required=True)
    add_common_args(p, version="0.5.23")
    p.add_argument(
        "--context-length", "--max-model-len", dest="context_length", type=int, default=32768
    )
    p.add_argument(
        "--max-total-tokens",
        type=int,
        default=4_000_000,
        help="prefix-cache capacity in ids (LRU leaves evicted beyond it)",
    )
    p.add_argument(
        "--skip-tokenizer-init",
        action="store_true",
        help="answer without `text`, as SGLang started with this flag",
    )
    p.add_argument("--enable-return-routed-experts", action="store_true")
    p.add_argument(
        "--hide-max-model-len",
        action="store_true",
        help="GET /v1/models without max_model_len (as some routers list models)",
    )
    p.add_argument(
        "--bad-id-behaviour",
        choices=("crash", "drop", "400"),
        default="crash",
        help="an input id < 0 or >= vocab: crash (SGLang 0.5.23: the connection "
        "drops and the server exits), drop (the connection only), 400",
    )
    return p.parse_args(argv)


def state_from_args(args: argparse.Namespace) -> EngineState:
    """The engine state the command line describes (loads the model folder)."""
    return EngineState(Model.from_args(args), settings_from_args(Settings, args))


def main(argv: list[str] | None = None) -> None:
    run_main(argv, parse_args, lambda args: run(state_from_args(args), args))
