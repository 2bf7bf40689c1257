"""The ``fasttito`` command line (also ``python -m fasttito``).

* ``fasttito demo``: a multi-turn tool-using rollout over every transport against local
  engines, with a per-turn table of what TITO did;
* ``fasttito doctor MODEL_DIR``: is token-in/token-out safe for this model's chat template?
* ``fasttito bench``: fasttito against its peers, in one process, as markdown tables.

Exit codes: 0 success, 1 a check failed (``doctor``: TITO would be wrong; ``demo``: a prompt
differs from the full render), 2 bad input (a missing model folder, a debug build for ``bench``).
"""

from __future__ import annotations

import argparse
import os
import sys

from fasttito import __version__
from fasttito.cli import bench, demo, doctor
from fasttito.errors import FasttitoError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fasttito`` console script."""
    parser = argparse.ArgumentParser(
        prog="fasttito", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"fasttito {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {"demo": demo, "doctor": doctor, "bench": bench}
    for module in commands.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # keep stdout and the progress on stderr in order
        sys.stdout.reconfigure(line_buffering=True)
    try:
        code: int = commands[args.command].run(args)
        return code
    except FasttitoError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fasttito doctor DIR | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
