"""``sglang-generate``: SGLang's native ``POST {root}/generate`` with ``input_ids`` every turn
(docs/wire.md S): the stitched ids on TITO turns, a full local render otherwise, as on
``vllm-generate``. The body (``_core.request_body("sglang-generate", ...)``) asks for the
sampled tokens' logprobs (``return_logprob``, ``logprob_start_len: -1``), keeps the stop token
(``skip_special_tokens: false``, ``no_stop_trim: true``, the tokenizer's ``stop_token_ids``) and
carries ``rid``, ``cache_salt`` and ``priority`` at the root. The response's ``text`` is never
used: the message is decoded locally from ``output_ids``, so ``--skip-tokenizer-init`` servers
work too. ``meta_info.cached_tokens`` becomes :attr:`Turn.cached_tokens`; an aborted request
raises :class:`fasttito.EngineAbortError` with the server's message."""

from __future__ import annotations

from typing import Any

from fasttito.transports._base import Transport

__all__ = ["SglangGenerateTransport"]


class SglangGenerateTransport(Transport):
    name = "sglang-generate"
    wire = "sglang"
    needs_tokenizer = True
    kind = "sglang-generate"
    ids_route = ("root", "/generate")
    sends_top_logprobs = True

    def ask_top_logprobs(self, k: int, sampling: dict[str, Any]) -> None:
        sampling["top_logprobs_num"] = k  # entries name their token ids: [logprob, id, text]
