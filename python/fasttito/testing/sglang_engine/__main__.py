"""``python -m fasttito.testing.sglang_engine``."""

from fasttito.testing.sglang_engine.server import main

main()
