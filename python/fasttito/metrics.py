"""Process-wide counters of the TITO engine.

>>> import fasttito
>>> fasttito.reset_metrics()
>>> fasttito.metrics()["turns"]
0
"""

from __future__ import annotations

from fasttito import _core

__all__ = ["metrics", "reset_metrics"]


def metrics() -> dict[str, int]:
    """Counters since start (or the last reset): ``turns``, ``tito``, ``mito``,
    ``tokens_reused`` (ids copied verbatim from previous turns), ``tokens_bridged`` (new ids
    rendered for tool/user messages and the generation prompt), ``tokens_rendered`` (ids of full
    local renders), ``verify_mismatches``, and ``fallback.<reason>`` for every fallback reason."""
    return dict(_core.metrics())


def reset_metrics() -> None:
    """Set every counter to zero."""
    _core.reset_metrics()
