"""A test engine's process lifetime and the command-line options every engine takes.

An engine binds 127.0.0.1 (``--port 0``: a free port), prints ONE line on stdout when it
listens, then nothing else (logs go to stderr)::

    {"event": "ready", "host": "127.0.0.1", "port": 41234, "pid": 123, "model": "qwen2.5", ...}

(also written to ``--port-file`` when given), and stops on SIGTERM/SIGINT, after
``--idle-timeout`` seconds without a request, and when its parent process dies
(``os.getppid()`` changes, or ``--parent-pid`` disappears).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

__all__ = [
    "add_common_args",
    "common_settings",
    "offline",
    "parent_alive",
    "run_main",
    "serve",
    "settings_from_args",
]

T = TypeVar("T")


def offline() -> None:
    """Never reach the Hugging Face Hub: the model is a local folder."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_main(
    argv: list[str] | None,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    start: Callable[[argparse.Namespace], Awaitable[None]],
) -> None:
    """An engine's ``main``: offline, parse the command line, run ``start(args)`` (which loads
    the model folder and calls ``serve``) to the end."""
    offline()
    args = parse_args(argv)

    async def go() -> None:
        await start(args)

    asyncio.run(go())


def parent_alive(parent_pid: int | None, initial_ppid: int) -> bool:
    """Whether ``parent_pid`` (when given) still exists, else whether our parent is still the
    process that started us."""
    if parent_pid is not None:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return os.getppid() == initial_ppid


async def serve(
    app: web.Application,
    args: argparse.Namespace,
    ready: dict[str, Any],
    last_activity: Callable[[], float],
    *,
    backlog: int,
    label: str,
) -> None:
    """Serve ``app`` on 127.0.0.1:``args.port`` until a signal, the idle timeout or the
    parent's death; print the ready line (``ready`` adds to the host, port and pid). ``label``
    names the engine in the stop message on stderr."""
    initial_ppid = os.getppid()
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=backlog)
    await site.start()
    port = int(runner.addresses[0][1])  # the bound port (--port 0 picks a free one)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    why = {"reason": "signal"}

    async def watchdog() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.25)
            if not parent_alive(args.parent_pid, initial_ppid):
                why["reason"] = "parent process exited"
                stop.set()
            elif args.idle_timeout > 0 and time.monotonic() - last_activity() > args.idle_timeout:
                why["reason"] = f"idle for {args.idle_timeout:g}s"
                stop.set()

    dog = asyncio.create_task(watchdog())
    line = {"event": "ready", "host": "127.0.0.1", "port": port, "pid": os.getpid(), **ready}
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(json.dumps(line))
        tmp.replace(args.port_file)
    print(json.dumps(line), flush=True)
    await stop.wait()
    print(f"{label}: stopping ({why['reason']})", file=sys.stderr, flush=True)
    dog.cancel()
    await runner.cleanup()


def add_common_args(p: argparse.ArgumentParser, *, version: str) -> None:
    """The options of every test engine (``version``: the default of ``--version-string``)."""
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed when ready)")
    p.add_argument(
        "--served-model-name",
        action="append",
        default=None,
        help="repeatable; default: the model folder's name",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="exit after this many seconds without requests (0: never)",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process is gone (default: when getppid() changes)",
    )
    p.add_argument(
        "--disable-route",
        action="append",
        default=[],
        help="answer 404 on this path (e.g. /v1/chat/completions/tokens)",
    )
    p.add_argument(
        "--stop-token-id",
        type=int,
        action="append",
        default=None,
        help="override the stop ids (default: eos + known stop tokens)",
    )
    p.add_argument("--version-string", default=version, help="the version the engine reports")
    p.add_argument(
        "--max-recorded-requests",
        type=int,
        default=10_000,
        help="keep the last N requests for GET /_admin/requests (0: record none)",
    )
    p.add_argument(
        "--prefix-store-size",
        type=int,
        default=8192,
        help="completions remembered to recover conversations from ids (LRU; 0: none)",
    )
    p.add_argument("--port-file", default=None, help="also write the ready JSON to this file")
    p.add_argument(
        "--renderer",
        choices=("auto", "transformers", "fasttito"),
        default=None,
        help="who renders and tokenizes (default: $FASTTITO_ENGINE_RENDERER, else auto: "
        "transformers when importable, else fasttito.Tokenizer)",
    )


def common_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every engine takes from the options of ``add_common_args``."""
    return {
        "served_names": args.served_model_name or [Path(args.model).resolve().name],
        "disabled_routes": set(args.disable_route),
        "version": args.version_string,
        "max_recorded": args.max_recorded_requests,
        "prefix_store_size": args.prefix_store_size,
    }


def settings_from_args(cls: Callable[..., T], args: argparse.Namespace) -> T:
    """An engine's settings ``cls`` from its command line: the common settings, and
    each other field from the option of the same name (fields no option names keep their
    defaults)."""
    common = common_settings(args)
    names = set(inspect.signature(cls).parameters) - set(common)
    return cls(**common, **{k: v for k, v in vars(args).items() if k in names})
