"""``python -m fasttito.testing.vllm_engine``."""

from fasttito.testing.vllm_engine.server import main

main()
