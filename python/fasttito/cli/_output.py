"""Terminal output of the commands: aligned plain-text tables, markdown tables, progress.

Results go to stdout as plain text (no colour codes), so they read the same in a terminal, a CI
log and a file. Progress goes to stderr: in a terminal, with ``rich`` installed (the ``cli``
extra), a spinner with the elapsed time while a step runs; elsewhere one line when it starts.
Either way a line says when it ended and how long it took.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

__all__ = ["markdown_table", "progress", "text_table"]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(row[i]) for row in rows if row[i] not in (None, "", "-")) and bool(rows)
        for i in range(len(headers))
    ]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.rjust(w) if numeric[i] and n > 0 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _spinner(what: str) -> AbstractContextManager[Any] | None:
    """A live spinner with the elapsed time on stderr, when stderr is a terminal and ``rich`` is
    installed; None otherwise (a pipe, a file, ``TERM=dumb``)."""
    if not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        return None
    try:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    except ImportError:
        return None

    @contextmanager
    def live() -> Iterator[None]:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            bar.add_task(what, total=None)
            yield

    return live()


@contextmanager
def progress(what: str) -> Iterator[None]:
    """Shows that ``what`` is running (a spinner in a terminal, else a ``... what`` line on
    stderr), then ``done in N s`` (or ``failed after N s``) when the block ends."""
    spinner = _spinner(what)
    if spinner is None:
        print(f"... {what}", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        with spinner if spinner is not None else nullcontext():
            yield
    except BaseException:
        print(f"    {what}: failed after {time.monotonic() - start:.1f} s", file=sys.stderr)
        raise
    done = f"{what}: done" if spinner is not None else "done"
    print(f"    {done} in {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
