"""Timing and formatting shared by the suites."""

from __future__ import annotations

import gc
import importlib
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from fasttito.bench import SuiteSkipped

__all__ = [
    "fmt_ms",
    "model_folder",
    "peer",
    "timeit_blocks",
    "timeit_interleaved",
    "us",
]


def peer(module: str, extra: str = "bench") -> ModuleType:
    """Import a peer, or skip the suite with a note saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SuiteSkipped(
            f"{module.split('.')[0]} is not installed ({exc}); pip install 'fasttito[{extra}]' "
            "or scripts/bootstrap.sh release test,bench"
        ) from None


def model_folder(name: str) -> Path:
    """``models/NAME`` (vendored in the repository, relative to the current directory) or
    ``$FASTTITO_MODELS/NAME`` (the model matrix, docs/models.md)."""
    roots = [Path("models")]
    if os.environ.get("FASTTITO_MODELS"):
        roots.append(Path(os.environ["FASTTITO_MODELS"]))
    for root in roots:
        if (root / name / "tokenizer.json").is_file():
            return root / name
    raise SuiteSkipped(
        f"no {name} model folder in {' or '.join(str(r) for r in roots)}; run from the "
        "repository root or set FASTTITO_MODELS"
    )


def timeit_blocks(
    fns: dict[str, Callable[[int], Any]], min_rounds: int, min_seconds: float, passes: int = 5
) -> dict[str, float]:
    """Median seconds per call of each function, one candidate after the other, each with the
    cyclic GC on and a collection before its block: every candidate pays for its own garbage,
    not for the garbage of the previous one (interleaving made fasttito's ~0.1 ms calls pay for
    collections of verifiers' garbage, a 6x distortion).

    The candidates take turns in ``passes`` passes of ``min_seconds / passes`` each, and the
    median is over all of a candidate's samples: on a shared machine whose speed drifts by up to
    2x within minutes, one long block per candidate compared candidates measured at different
    speeds."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn(-1)
    for _ in range(passes):
        for name, fn in fns.items():
            gc.collect()
            mine = samples[name]
            start = time.perf_counter()
            rounds, want_rounds, want_seconds = 0, -(-min_rounds // passes), min_seconds / passes
            while (
                rounds < want_rounds or time.perf_counter() - start < want_seconds
            ) and rounds < 3000 // passes:
                t0 = time.perf_counter()
                fn(len(mine))
                mine.append(time.perf_counter() - t0)
                rounds += 1
    return {name: statistics.median(v) for name, v in samples.items()}


def timeit_interleaved(
    fns: dict[str, Callable[[int], Any]], min_rounds: int, min_seconds: float
) -> dict[str, float]:
    """Median seconds per call of each function, interleaved round by round."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _, fn in fns.items():  # warm-up
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


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"
