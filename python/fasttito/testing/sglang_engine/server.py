"""Command line and process lifetime of the SGLang engine (``python -m
fasttito.testing.sglang_engine``); the flags are listed in the package docstring."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from fasttito.testing.sglang_engine.routes import build_app
from fasttito.testing.sglang_engine.state import EngineState, Settings
from fasttito.testing.vllm_engine import Model, _parent_alive

__all__ = ["main", "parse_args"]


async def run(st: EngineState, args: argparse.Namespace) -> None:
    initial_ppid = os.getppid()
    runner = web.AppRunner(
        build_app(st), access_log=None, handle_signals=False, shutdown_timeout=2.0
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
    await site.start()
    port = int(runner.addresses[0][1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    why = {"reason": "signal"}

    async def watchdog() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.25)
            if not _parent_alive(args.parent_pid, initial_ppid):
                why["reason"] = "parent process exited"
                stop.set()
            elif args.idle_timeout > 0 and time.monotonic() - st.last_activity > args.idle_timeout:
                why["reason"] = f"idle for {args.idle_timeout:g}s"
                stop.set()

    dog = asyncio.create_task(watchdog())
    ready = {
        "event": "ready",
        "host": "127.0.0.1",
        "port": port,
        "pid": os.getpid(),
        "model": st.s.served_names[0],
        "renderer": st.model.renderer,
        "engine": "sglang",
    }
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(json.dumps(ready))
        tmp.replace(args.port_file)
    print(json.dumps(ready), flush=True)
    await stop.wait()
    print(f"sglang test engine: stopping ({why['reason']})", file=sys.stderr, flush=True)
    dog.cancel()
    await runner.cleanup()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="SGLang-compatible test engine (tests only)")
    p.add_argument("--model", "--model-path", dest="model", required=True)
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed when ready)")
    p.add_argument("--served-model-name", action="append", default=None)
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
    p.add_argument("--disable-route", action="append", default=[])
    p.add_argument("--stop-token-id", type=int, action="append", default=None)
    p.add_argument("--version-string", default="0.5.23")
    p.add_argument("--max-recorded-requests", type=int, default=10_000)
    p.add_argument("--prefix-store-size", type=int, default=8192)
    p.add_argument("--idle-timeout", type=float, default=300.0)
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--port-file", default=None)
    p.add_argument("--renderer", choices=("auto", "transformers", "fasttito"), default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    args = parse_args(argv)
    model = Model(args.model, args.stop_token_id, args.renderer)
    settings = Settings(
        served_names=args.served_model_name or [Path(args.model).resolve().name],
        context_length=args.context_length,
        max_total_tokens=args.max_total_tokens,
        skip_tokenizer_init=args.skip_tokenizer_init,
        enable_return_routed_experts=args.enable_return_routed_experts,
        hide_max_model_len=args.hide_max_model_len,
        bad_id_behaviour=args.bad_id_behaviour,
        disabled_routes=set(args.disable_route),
        version=args.version_string,
        max_recorded=args.max_recorded_requests,
        prefix_store_size=args.prefix_store_size,
    )
    asyncio.run(run(EngineState(model, settings), args))
