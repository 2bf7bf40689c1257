"""Injected faults of the SGLang engine: what a real SGLang (or the network in front of it) can
do wrong, queued or drawn at random per request (``POST /_admin/faults``)."""

from __future__ import annotations

import random
from typing import Any

__all__ = [
    "BODY_FAULTS",
    "FAULT_MODES",
    "FaultError",
    "mutate_body",
    "parse_fault",
    "parse_random",
    "take_fault",
]

STATUS_FAULTS = {"http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504}
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
#: Faults of the exchange itself.
WIRE_FAULTS = (
    "delay",  # wait "seconds", then answer
    "stall",  # headers + half the body, silence for "seconds", then a TCP reset
    "reset",  # headers + half the body, then a TCP reset
    "drop",  # close the connection without answering
    "crash",  # drop the connection and exit, as SGLang does on an out-of-range id
    "truncated_json",  # 200 with the first half of the body
    "malformed_json",  # 200 with a body that is not JSON
    "status",  # "status": N with an SGLang error body
)
FAULT_MODES = tuple(STATUS_FAULTS) + WIRE_FAULTS + BODY_FAULTS
GENERATE_PATH = "/generate"


class FaultError(ValueError):
    """A malformed fault request (answered 400)."""


def parse_fault(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FaultError('a fault must be an object like {"mode": "http_503", "count": 1}')
    mode = obj.get("mode")
    if mode not in FAULT_MODES:
        raise FaultError(f"fault mode {mode!r} unknown; one of {list(FAULT_MODES)}")
    count = obj.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FaultError("fault count must be an integer >= 1")
    path = obj.get("path")
    if path is not None and not isinstance(path, str):
        raise FaultError("fault path must be a string")
    fault: dict[str, Any] = {"mode": mode, "count": count, "path": path}
    if mode == "status":
        status = obj.get("status")
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultError("fault mode 'status' needs \"status\": an int in 400..599")
        fault["status"] = status
    elif mode in STATUS_FAULTS:
        fault["status"] = STATUS_FAULTS[mode]
    if mode in ("delay", "stall"):
        seconds = obj.get("seconds", 1.0)
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise FaultError("fault seconds must be a number >= 0")
        fault["seconds"] = float(seconds)
    if mode == "abort":
        fault["message"] = str(obj.get("message") or "Abort in waiting queue (injected).")
        fault["abort_status"] = obj.get("status_code", 503)
    return fault


def parse_random(obj: Any) -> dict[str, Any] | None:
    """``{"rate", "modes", "seed", "seconds", "delay_seconds"}`` or None (off)."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise FaultError('random faults must be an object like {"rate": 0.05, "modes": [...]}')
    rate = obj.get("rate")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise FaultError("random fault rate must be a number in [0, 1]")
    modes = obj.get("modes")
    if not isinstance(modes, list) or not modes or "status" in modes or "crash" in modes:
        raise FaultError("random fault modes must be a non-empty list (not 'status', 'crash')")
    templates = [
        parse_fault(
            {"mode": m, "seconds": obj.get("delay_seconds" if m == "delay" else "seconds", 1.0)}
        )
        for m in modes
    ]
    seed = obj.get("seed", 0)
    if not isinstance(seed, int):
        raise FaultError("random fault seed must be an integer")
    return {
        "rate": float(rate),
        "modes": modes,
        "seed": seed,
        "templates": templates,
        "rng": random.Random(seed),
    }


def _applies(fault: dict[str, Any], path: str) -> bool:
    if fault["path"] is not None:
        return bool(fault["path"] == path)
    if fault["mode"] in BODY_FAULTS or fault["mode"] == "crash":
        return path == GENERATE_PATH
    return True


def take_fault(state: Any, path: str) -> dict[str, Any] | None:
    """The first queued fault that applies to ``path`` (its count taken), else a random one."""
    for f in state.faults:
        if f["count"] > 0 and _applies(f, path):
            f["count"] -= 1
            taken = dict(f)
            state.faults = [g for g in state.faults if g["count"] > 0]
            state.injected[taken["mode"]] = state.injected.get(taken["mode"], 0) + 1
            return taken
    rnd = state.random_faults
    if rnd is not None and rnd["rate"] > 0 and rnd["rng"].random() < rnd["rate"]:
        candidates = [t for t in rnd["templates"] if _applies(t, path)]
        if candidates:
            taken = dict(rnd["rng"].choice(candidates))
            state.injected[taken["mode"]] = state.injected.get(taken["mode"], 0) + 1
            return taken
    return None


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
