"""HTTP at scale: whole rollout.generate turns against bare aiohttp and httpx:
``fasttito bench http`` (the code lives in ``fasttito.bench.http``)."""

import sys

from fasttito.cli import main

raise SystemExit(main(["bench", "http", *sys.argv[1:]]))
