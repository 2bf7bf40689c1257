"""What fasttito's test engines have in common, whatever wire they speak.

The vLLM-compatible engine (``fasttito.testing.vllm_engine``) and the SGLang-compatible one
(``fasttito.testing.sglang_engine``) differ in their routes and bodies; the machinery around
them is one:

* ``fasttito.testing.engine_core.faults``: parsing of injected faults, the queue and the
  random draw (``POST /_admin/faults``), and how a wire fault delivers a finished body
  (truncated, malformed, reset, stall, dropped);
* ``fasttito.testing.engine_core.http``: JSON answers, the request log with redacted
  headers, cutting a connection;
* ``fasttito.testing.engine_core.admin``: the ``/_admin/*`` routes;
* ``fasttito.testing.engine_core.lifecycle``: the process lifetime (the ready line, the
  parent watch, the idle timeout, signals) and the command-line options every engine takes.
"""
