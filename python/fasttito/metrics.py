"""Process-wide counters of the TITO engine.

>>> import fasttito
>>> fasttito.reset_metrics()
>>> fasttito.metrics()["turns"]
0
"""

from __future__ import annotations

import threading
from collections import Counter

from fasttito import _core

__all__ = ["count_error", "metrics", "reset_metrics"]

_errors: Counter[str] = Counter()
_errors_lock = threading.Lock()


def metrics() -> dict[str, int]:
    """Counters since start (or the last reset): ``turns``, ``tito``, ``mito``,
    ``tokens_reused`` (ids copied verbatim from previous turns), ``tokens_bridged`` (new ids
    rendered for tool/user messages and the generation prompt), ``tokens_rendered`` (ids of full
    local renders), ``verify_mismatches``, ``fallback.<reason>`` for every fallback reason, and
    ``errors.<ErrorClass>`` for every class of error a turn of ``fasttito.Client`` raised.

    A turn counts as TITO or MITO once it completed (its response was parsed and recorded); a
    turn that raised counts only under ``errors``."""
    out = dict(_core.metrics())
    with _errors_lock:
        out.update((f"errors.{name}", n) for name, n in _errors.items())
    return out


def count_error(exc: BaseException) -> None:
    """Counts a failed turn under ``errors.<class name>`` (cancellations included)."""
    with _errors_lock:
        _errors[type(exc).__name__] += 1


def reset_metrics() -> None:
    """Set every counter to zero."""
    _core.reset_metrics()
    with _errors_lock:
        _errors.clear()
