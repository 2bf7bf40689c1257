"""Local test servers for fasttito's tests (never imported by fasttito itself).

* ``vllm_engine.py``: a vLLM-compatible HTTP engine on 127.0.0.1 that renders with
  ``transformers.apply_chat_template`` and returns scripted, template-exact completions.
* ``launch.py``: start one as a subprocess (free port), wait until it answers, stop it by PID.
"""
