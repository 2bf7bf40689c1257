"""Injected faults of the SGLang engine: what a real SGLang (or the network in front of it) can
do wrong, queued or drawn at random per request (``POST /_admin/faults``; the queue, the random
draw and the wire faults are ``fasttito.testing.engine_core.faults``)."""

from __future__ import annotations

from typing import Any

from fasttito.testing.engine_core import faults as core
from fasttito.testing.engine_core.faults import FaultBook, FaultError

__all__ = [
    "BODY_FAULTS",
    "FAULT_MODES",
    "MALFORMED_BODY",
    "FaultError",
    "fault_book",
    "mutate_body",
    "parse_fault",
]

#: Faults that rewrite a finished ``/generate`` body.
BODY_FAULTS = (
    "short_logprobs",  # output_token_logprobs one entry shorter than output_ids
    "long_logprobs",  # ... one entry longer
    "wrong_logprob_id",  # an entry names another id than output_ids[i]
    "null_logprob",  # one logprob is null
    "oov_token_id",  # output_ids[0] = vocab size + 12345
    "no_stop_token",  # the final stop id (and its logprob) removed
    "missing_output_ids",  # the output_ids key removed
    "abort",  # finish_reason {"type": "abort", "message", "status_code", "err_type"}
    "batch_shape",  # the result wrapped in a JSON array (what a 2-D input_ids returns)
)
#: Faults of the exchange itself: the shared ones (``fasttito.testing.engine_core.faults``)
#: and ``crash``: drop the connection and exit, as SGLang does on an out-of-range id.
WIRE_FAULTS = (*core.WIRE_FAULTS, "crash")
FAULT_MODES = tuple(core.STATUS_FAULTS) + WIRE_FAULTS + BODY_FAULTS
GENERATE_PATH = "/generate"
#: What a ``malformed_json`` fault sends.
MALFORMED_BODY = b'{"output_ids": [1 2 3], "meta_info": {,}'


def parse_fault(obj: Any) -> dict[str, Any]:
    """One fault request in its queued form (``engine_core.faults.parse_fault``, plus an
    ``abort``'s ``message`` and ``abort_status``)."""
    fault = core.parse_fault(obj, FAULT_MODES)
    if fault["mode"] == "abort":
        fault["message"] = str(obj.get("message") or "Abort in waiting queue (injected).")
        fault["abort_status"] = obj.get("status_code", 503)
    return fault


def _applies(mode: str, path: str) -> bool:
    if mode in BODY_FAULTS or mode == "crash":
        return path == GENERATE_PATH
    return True


def fault_book() -> FaultBook:
    """An empty fault book with the SGLang engine's modes (``crash`` is never drawn at random)."""
    return FaultBook(parse_fault, _applies, not_random=("status", "crash"))


def mutate_body(
    payload: dict[str, Any], fault: dict[str, Any], vocab_size: int, stop_set: frozenset[int]
) -> Any:
    """The body after ``fault`` (a body fault); may return another shape (``batch_shape``)."""
    mode = fault["mode"]
    ids = payload.get("output_ids") or []
    meta = payload.setdefault("meta_info", {})
    lps = meta.get("output_token_logprobs")
    if lps is None and mode in ("short_logprobs", "long_logprobs", "wrong_logprob_id"):
        lps = meta["output_token_logprobs"] = [[-0.5, t, None] for t in ids]
    if mode == "short_logprobs":
        del lps[-1:]
    elif mode == "long_logprobs":
        lps.append(list(lps[-1]) if lps else [-0.5, 0, None])
    elif mode == "wrong_logprob_id":
        if lps:
            i = len(lps) // 2
            lps[i] = [lps[i][0], (lps[i][1] + 1) % vocab_size, None]
    elif mode == "null_logprob":
        if lps:
            lps[len(lps) // 2][0] = None
    elif mode == "oov_token_id":
        if ids:
            ids[0] = vocab_size + 12345
            if lps:
                lps[0][1] = ids[0]
    elif mode == "no_stop_token":
        if ids and ids[-1] in stop_set:
            ids.pop()
            if lps:
                lps.pop()
            meta["completion_tokens"] = len(ids)
            meta["finish_reason"] = {"type": "stop", "matched": None}
    elif mode == "missing_output_ids":
        payload.pop("output_ids", None)
    elif mode == "abort":
        meta["finish_reason"] = {
            "type": "abort",
            "message": fault.get("message"),
            "status_code": fault.get("abort_status", 503),
            "err_type": None,
        }
    elif mode == "batch_shape":
        return [payload]
    return payload
