"""``vllm-generate``: vLLM >= 0.20 ``POST {root}/inference/v1/generate`` with ``token_ids``
every turn (docs/wire.md B.2): the stitched ids on TITO turns, a full local render otherwise. The
response carries ids only, so the message is decoded locally."""

from __future__ import annotations

from fasttito.transports._base import Transport

__all__ = ["VllmGenerateTransport"]


class VllmGenerateTransport(Transport):
    name = "vllm-generate"
    wire = "vllm-generate"
    needs_tokenizer = True
    kind = "vllm-generate"
    ids_route = ("root", "/inference/v1/generate")
