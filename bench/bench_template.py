"""Render + tokenize against transformers: ``fasttito bench template`` (the code lives in
``fasttito.bench.template``). Arguments as before: ``--model DIR`` (repeatable),
``--turns 4,16,64``, ``--seconds S``."""

import sys

from fasttito.cli import main

raise SystemExit(main(["bench", "template", *sys.argv[1:]]))
