"""The per-turn TITO step against verifiers and renderers: ``fasttito bench tito`` (the code
lives in ``fasttito.bench.tito``). The turn counts stay the optional argument:
``bench/bench_tito.py 4,16,64``."""

import sys

from fasttito.cli import main

turns = ["--turns", sys.argv[1]] if len(sys.argv) > 1 else []
raise SystemExit(main(["bench", "tito", *turns]))
