"""``fasttito bench``: fasttito against its peers, in one process, as markdown tables.

Suites (``fasttito.bench.SUITES``): ``template`` (render + tokenize against transformers and
tokenizers), ``tito`` (the per-turn TITO step against verifiers and renderers), ``parse``
(response parsing and request bodies against openai-python, json and orjson), ``http`` (whole
``rollout.generate`` turns at 50 and 1,000 concurrent rollouts against bare aiohttp and httpx),
``verifiers`` (the verifiers drop-in client against verifiers' own), ``renderers``
(``fasttito.renderers`` against renderers' Qwen3 and default renderers, and its ``generate``).
Peers come from the ``bench`` extra (``scripts/bootstrap.sh release test,bench``); a suite whose
peer is missing is skipped with a note. Timings are medians on this machine; the ratios are what
to compare.

A debug build is refused: its timings say nothing about a release build (``--allow-debug``
runs anyway, with a warning above every table).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from fasttito import _core
from fasttito.bench import SUITES, SuiteSkipped
from fasttito.cli._output import markdown_table, progress

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark fasttito against its peers (markdown tables of medians and ratios)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "suites",
        nargs="*",
        metavar="SUITE",
        help=f"suites to run (default: all): {', '.join(SUITES)}",
    )
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds (a smoke test)")
    p.add_argument("--turns", help="conversation sizes in turns, e.g. 4,16,64 (template, tito)")
    p.add_argument(
        "--model",
        action="append",
        help="model folder for the template suite (repeatable; default: qwen2.5, qwen3, llama-3.2)",
    )
    p.add_argument("--seconds", type=float, help="minimum seconds per cell group (template)")
    p.add_argument("--plot", metavar="FILE.png", help="draw per-turn cost against turns")
    p.add_argument(
        "--allow-debug", action="store_true", help="run on a debug build (numbers are meaningless)"
    )


def run(args: argparse.Namespace) -> int:
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        print(
            f"error: unknown suite {', '.join(unknown)}; suites: {', '.join(SUITES)}",
            file=sys.stderr,
        )
        return 2
    debug = _core.build_profile != "release"
    if debug and not args.allow_debug:
        print(
            "error: fasttito is a debug build; its timings mean nothing. Benchmark a release "
            "build (scripts/bootstrap.sh release test,bench), or pass --allow-debug.",
            file=sys.stderr,
        )
        return 2
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            print("error: --plot needs matplotlib: pip install 'fasttito[plot]'", file=sys.stderr)
            return 2
    options: dict[str, Any] = {
        "turns": [int(t) for t in args.turns.split(",")] if args.turns else None,
        "models": args.model,
        "seconds": args.seconds,
    }
    results: dict[str, list[dict[str, Any]]] = {}
    skipped = 0
    for name in args.suites or list(SUITES):
        module = importlib.import_module(SUITES[name])
        title = getattr(module, "TITLE", name)
        print(f"## {name}: {title}\n")
        if debug:
            print("**WARNING: debug build, these timings are meaningless.**\n")
        measure = module.measure
        accepted = inspect.signature(measure).parameters
        kwargs = {k: v for k, v in options.items() if v is not None and k in accepted}
        try:
            with progress(f"bench {name}" + (" (quick)" if args.quick else "")):
                rows: list[dict[str, Any]] = measure(args.quick, **kwargs)
            versions = getattr(module, "versions", None)
            if versions is not None:
                print(f"{versions()}\n")
        except SuiteSkipped as exc:
            print(f"skipped: {exc}\n")
            skipped += 1
            continue
        results[name] = rows
        for table in _tables(rows):
            print(table + "\n")
        summary = getattr(module, "summary", None)
        for line in summary(rows) if summary is not None else []:
            print(line + "\n")
    if args.plot:
        drawn = _plot(results, Path(args.plot))
        print(
            f"plot: {args.plot} ({drawn})"
            if drawn
            else "plot: nothing to draw (no per-turn suite ran)"
        )
    return 0 if results or not skipped else 1


def _tables(rows: list[dict[str, Any]]) -> list[str]:
    """One markdown table per run of rows with the same columns."""
    groups: list[tuple[list[str], list[list[Any]]]] = []
    for row in rows:
        cols = [k for k in row if not k.startswith("_")]
        if not groups or groups[-1][0] != cols:
            groups.append((cols, []))
        groups[-1][1].append([row[c] for c in cols])
    return [markdown_table(cols, body) for cols, body in groups]


def _plot(results: dict[str, list[dict[str, Any]]], path: Path) -> str:
    """Per-turn cost (ms, log scale) against the number of turns: one panel per suite with
    ``_turns``/``_series`` data. Returns what was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {
        name: rows
        for name, rows in results.items()
        if any("_turns" in r and "_series" in r for r in rows)
    }
    if not panels:
        return ""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (name, rows) in zip(axes[0], panels.items(), strict=True):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in rows:
            for label, seconds in r.get("_series", {}).items():
                series.setdefault(label, []).append((int(r["_turns"]), float(seconds) * 1e3))
        for label, points in series.items():
            points.sort()
            style = "-" if "fasttito" in label else "--"
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ticks = sorted({p[0] for points in series.values() for p in points})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_yscale("log")
        ax.set_xlabel("turns in the conversation")
        ax.set_ylabel("cost per turn (ms, median)")
        ax.set_title(f"fasttito bench {name}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"fasttito {_core.__version__} ({_core.build_profile} build)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return ", ".join(panels)
