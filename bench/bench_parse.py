"""Response parsing and request bodies against openai-python, json and orjson:
``fasttito bench parse`` (the code lives in ``fasttito.bench.parse``)."""

from fasttito.cli import main

raise SystemExit(main(["bench", "parse"]))
