"""Local servers for testing code that talks to vLLM or NVIDIA Dynamo, without a GPU.

* :func:`start_engine`: fasttito's vLLM-compatible engine (``fasttito.testing.vllm_engine``) on
  127.0.0.1: every vLLM route fasttito speaks (``/v1/chat/completions`` with token ids,
  prime-rl's ``/v1/chat/completions/tokens``, ``/tokenize``, ``/inference/v1/generate``...),
  scripted template-exact completions (a tool-calling agent by default), and an admin API for
  scripts, recorded requests and injected faults (``engine.script(...)``,
  ``engine.requests()``, ``engine.faults(...)``).
* :func:`start_dynamo`: the real NVIDIA Dynamo frontend (``pip install ai-dynamo==1.6.1``) with
  a scripted engine written against Dynamo's Python backend API.

Both run as child processes, render with transformers when it is importable and else with
``fasttito.Tokenizer`` (:mod:`fasttito.testing.renderer`), and stop by PID when the ``with``
block ends, after an idle timeout, or when the process that started them dies::

    from fasttito.testing import start_engine

    with start_engine("models/qwen2.5", served_model_name="test-model") as engine:
        engine.script(mode="tool_agent", tool_calls=2)
        client = fasttito.Client(engine.v1_url, "test-model", transport="vllm-generate",
                                 tokenizer="models/qwen2.5")
"""

from __future__ import annotations

from fasttito.testing.dynamo_launch import DynamoHandle as DynamoHandle
from fasttito.testing.dynamo_launch import DynamoStartError as DynamoStartError
from fasttito.testing.dynamo_launch import dynamo_importable as dynamo_importable
from fasttito.testing.dynamo_launch import dynamo_server as dynamo_server
from fasttito.testing.dynamo_launch import start_dynamo as start_dynamo
from fasttito.testing.launch import EngineProcess as EngineProcess
from fasttito.testing.launch import EngineStartError as EngineStartError
from fasttito.testing.launch import start_engine as start_engine
from fasttito.testing.launch import stop_engine as stop_engine

__all__ = [
    "DynamoHandle",
    "DynamoStartError",
    "EngineProcess",
    "EngineStartError",
    "dynamo_importable",
    "dynamo_server",
    "start_dynamo",
    "start_engine",
    "stop_engine",
]
