"""Local servers for testing code that talks to vLLM, SGLang or NVIDIA Dynamo, without a GPU.

* :func:`start_engine`: fasttito's vLLM-compatible engine (``fasttito.testing.vllm_engine``) on
  127.0.0.1: every vLLM route fasttito speaks (``/v1/chat/completions`` with token ids,
  prime-rl's ``/v1/chat/completions/tokens``, ``/tokenize``, ``/inference/v1/generate``...),
  scripted template-exact completions (a tool-calling agent by default), and an admin API for
  scripts, recorded requests and injected faults (``engine.script(...)``,
  ``engine.requests()``, ``engine.faults(...)``).
* :func:`start_sglang`: fasttito's SGLang-compatible engine
  (``fasttito.testing.sglang_engine``): SGLang 0.5.23's native ``/generate`` as recorded from
  a real server, ``cached_tokens`` from a prefix cache of its own, and injectable faults
  (including the crash SGLang has on an out-of-range id), with the same admin API.
* :func:`start_dynamo`: the real NVIDIA Dynamo frontend (``pip install ai-dynamo==1.6.1``) with
  a scripted engine written against Dynamo's Python backend API.

All run as child processes, render with transformers when it is importable and else with
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
from fasttito.testing.launch import start_sglang as start_sglang
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
    "start_sglang",
    "stop_engine",
]
