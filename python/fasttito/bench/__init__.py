"""fasttito's benchmarks against its peers, in one process (``fasttito bench``).

Each suite is a module with ``measure(quick: bool, ...) -> list[dict]``: one dict per table row,
column name to cell (numbers or preformatted text); keys starting with ``_`` are data for
``--plot`` and stay out of the table (``_turns``: the conversation length, ``_series``: label
to seconds per call). Optional module attributes: ``TITLE`` (the table's heading),
``versions() -> str`` (what was measured against) and ``summary(rows) -> list[str]`` (lines
printed under the table). ``measure`` may also take ``turns``, ``models`` or ``seconds``
keywords; the command passes those it accepts. A suite raises :class:`SuiteSkipped` when a peer
it needs is not installed: the command prints the note and goes on.

A new suite is one line in :data:`SUITES`. Peers are imported inside ``measure``, so this
package imports without any of them.
"""

from __future__ import annotations

__all__ = ["SUITES", "SuiteSkipped"]

#: Suite name -> module. The order is the order ``fasttito bench`` runs them in.
SUITES: dict[str, str] = {
    "template": "fasttito.bench.template",
    "tito": "fasttito.bench.tito",
    "parse": "fasttito.bench.parse",
    "http": "fasttito.bench.http",
    "verifiers": "fasttito.bench.verifiers_client",
    "renderers": "fasttito.bench.renderers_suite",
}


class SuiteSkipped(Exception):
    """A suite cannot run here (a peer or a model folder is missing); the message says what
    to install or pass."""
