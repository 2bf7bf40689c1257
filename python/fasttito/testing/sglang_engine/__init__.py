"""An SGLang-compatible test engine: SGLang 0.5.23's native ``/generate`` wire (docs/wire.md S) on
127.0.0.1, with a real prefix cache and injectable faults. Start it with
``fasttito.testing.start_sglang`` (or ``python -m fasttito.testing.sglang_engine``).

A stock SGLang cannot run on CPU-only machines (its CPU engine needs a CPU build of
``sgl_kernel`` that PyPI does not ship), so this engine is what fasttito's SGLang transport is
tested against: it reproduces the shapes recorded from a real SGLang 0.5.23 server.

Run::

    python -m fasttito.testing.sglang_engine --model models/qwen2.5 --port 0 \\
        [--served-model-name NAME] [--context-length 32768] [--max-total-tokens 4000000] \\
        [--skip-tokenizer-init] [--enable-return-routed-experts] [--hide-max-model-len] \\
        [--bad-id-behaviour crash|drop|400] [--disable-route PATH]... [--stop-token-id ID]... \\
        [--idle-timeout 300] [--parent-pid PID] [--port-file FILE] [--renderer R]

It prints one ``{"event": "ready", "port": ..., "pid": ...}`` line when it listens and stops on
SIGTERM, after ``--idle-timeout`` idle seconds, or when its parent dies.

Routes:

* ``POST /generate``: ``input_ids`` (a list; a list of lists is a batch and answers a JSON
  array), ``sampling_params`` (SGLang's ``SamplingParams`` names only: another name is a
  validation error), ``return_logprob``, ``logprob_start_len``, ``top_logprobs_num``,
  ``return_text_in_logprobs``, ``rid``, ``stream``, ``priority``, ``cache_salt``,
  ``extra_key``, ``return_routed_experts``, ``routed_experts_start_len``; unknown root fields
  are ignored. Answers ``{"text"?, "output_ids", "meta_info": {"id", "finish_reason",
  "prompt_tokens", "completion_tokens", "cached_tokens", "output_token_logprobs",
  "output_top_logprobs"?, "routed_experts"?, ...}}``; ``text`` omits the stop token unless
  ``no_stop_trim``, and is absent with ``--skip-tokenizer-init``. ``stream: true``: SSE
  ``data: {json}`` chunks, cumulative, ``finish_reason`` null until the last, then
  ``data: [DONE]``.
* ``GET /v1/models``: ``owned_by: "sglang"``, ``max_model_len`` (= ``--context-length``)
* ``GET /server_info``: ``max_req_input_len`` (``min(context_length, max_total_tokens) - 1``),
  ``max_total_num_tokens``, ``version``...
* ``GET /get_model_info``: ``model_path``... (no length)
* ``GET /health``: 200, empty body
* ``/_admin/*``: as the vLLM engine's (``fasttito.testing.engine_core.admin``): ``script``,
  ``requests`` (each record also has ``cached_tokens``), ``reset`` (also empties the prefix
  cache), ``faults``

Errors: 400 ``{"error": {"message": ...}}`` for a missing or empty ``input_ids`` and a prompt
of ``--context-length`` ids or more ("The input (N tokens) is longer than the model's context
length (M tokens)."); validation errors as ``{"object": "error", "message", "type": "Bad
Request", "code": 400}``. A prompt of at least ``max_req_input_len`` ids (below the context
length) is answered 200 with ``finish_reason`` ``{"type": "abort", ...}``, the scheduler's
abort. An id below 0 or at or above the vocabulary size does what SGLang 0.5.23 does: the
connection drops without an answer and the engine exits (``--bad-id-behaviour``).

Completions are the vLLM engine's scripted, template-exact turns (a tool-calling agent by
default; ``engine.script(...)``), recovered from the ids exactly as its
``/inference/v1/generate`` does. ``cached_tokens`` comes from a radix tree of every finished
request's prompt + output (the last sampled id excluded: it has no KV yet), keyed by
``cache_salt``/``extra_key``: the longest common prefix with earlier requests, at most
``len(input_ids) - 1``, so a multi-turn rollout's cached tokens grow turn over turn.

Faults (``engine.faults({"mode": M, ...})``, or ``{"random": {"rate", "modes", "seed"}}``):
``http_500`` ``http_502`` ``http_503`` ``http_504`` ``status``, ``delay``, ``stall``, ``reset``,
``drop``, ``crash`` (drop and exit, as on a bad id), ``truncated_json``, ``malformed_json``, and
on ``/generate`` bodies ``short_logprobs``, ``long_logprobs``, ``wrong_logprob_id`` (an entry
naming another id than ``output_ids[i]``), ``null_logprob``, ``oov_token_id``, ``no_stop_token``,
``missing_output_ids``, ``abort`` (+ ``message``, ``status_code``), ``batch_shape``.
"""

from __future__ import annotations

from fasttito.testing.sglang_engine.server import main

__all__ = ["main"]
