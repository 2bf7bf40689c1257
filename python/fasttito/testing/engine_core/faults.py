"""Injected faults: what an engine, or the network in front of it, can do wrong.

A test queues faults with ``POST /_admin/faults`` (``{"mode": M, "count": 1, "path": null,
...}``, a list of them, or ``{"faults": [...], "replace": false}``) or turns on random ones
(``{"random": {"rate": R, "modes": [M, ...], "seed": 0, "seconds": 1.0, "delay_seconds":
1.0}}``; ``{"random": null}`` turns them off). Each request takes the first queued fault with
count left that applies to its path, else, with probability ``rate``, one drawn uniformly from
the random modes that apply. ``GET /_admin/faults`` shows the queue, the random setting and
``injected``: how many faults of each mode were taken since the last reset.

The modes every engine has (each engine adds its body faults and may add wire faults):

* ``http_500`` ``http_502`` ``http_503`` ``http_504``, ``status`` (+ ``"status": N`` in
  400..599): that status with the engine's error body; the request is not processed.
* ``delay`` (+ ``"seconds": S``, default 1.0): wait, then answer normally.
* ``stall`` (+ ``"seconds": S``, default 1.0): headers and half of the body, then nothing for S
  seconds (a client timeout shorter than S fires mid-body), then a TCP reset.
* ``reset``: headers and half of the body, then a TCP reset.
* ``drop``: close the connection without answering.
* ``truncated_json``: 200 with the first half of the JSON body (Content-Length matches).
* ``malformed_json``: 200 with a body that is not JSON.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fasttito.testing.engine_core.http import Dropped, abort_connection

__all__ = [
    "STATUS_FAULTS",
    "WIRE_FAULTS",
    "FaultBook",
    "FaultError",
    "deliver",
    "parse_fault",
    "parse_random",
    "start_fault",
]

STATUS_FAULTS = {"http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504}
#: Faults of the exchange itself, common to every engine.
WIRE_FAULTS = ("delay", "stall", "reset", "drop", "truncated_json", "malformed_json", "status")


class FaultError(ValueError):
    """A malformed fault request (the admin route answers 400 with this message)."""


def parse_fault(obj: Any, modes: tuple[str, ...]) -> dict[str, Any]:
    """The queued form of one fault request: ``mode``, ``count``, ``path``, then ``status``
    (status modes) or ``seconds`` (``delay``/``stall``). Engines add their modes' own keys."""
    if not isinstance(obj, dict):
        raise FaultError('a fault must be an object like {"mode": "http_503", "count": 1}')
    mode = obj.get("mode")
    if mode not in modes:
        raise FaultError(f"fault mode {mode!r} unknown; one of {list(modes)}")
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
    return fault


def parse_random(
    obj: Any, parse: Callable[[Any], dict[str, Any]], not_random: tuple[str, ...] = ("status",)
) -> dict[str, Any] | None:
    """The ``random`` setting (``rate``, ``modes``, ``seed``, ``seconds`` of a stall,
    ``delay_seconds``) with each mode's fault parsed by ``parse``, or None (off). The modes in
    ``not_random`` need more than a mode name and cannot be drawn."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise FaultError('random faults must be an object like {"rate": 0.05, "modes": [...]}')
    rate = obj.get("rate")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise FaultError("random fault rate must be a number in [0, 1]")
    modes = obj.get("modes")
    if not isinstance(modes, list) or not modes or any(m in modes for m in not_random):
        excluded = ", ".join(repr(m) for m in not_random)
        raise FaultError(f"random fault modes must be a non-empty list of modes (not {excluded})")
    templates = [
        parse({"mode": m, "seconds": obj.get("delay_seconds" if m == "delay" else "seconds", 1.0)})
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


class FaultBook:
    """An engine's faults: the queue, the random setting and the count of injected ones.

    ``parse`` turns one fault request into its queued form (the engine's modes), ``applies``
    says whether a fault without a ``path`` applies to a request path (body faults only to the
    routes whose bodies they rewrite), ``not_random`` names the modes a random draw cannot use.
    """

    def __init__(
        self,
        parse: Callable[[Any], dict[str, Any]],
        applies: Callable[[str, str], bool],
        not_random: tuple[str, ...] = ("status",),
    ) -> None:
        self.parse = parse
        self.applies_to = applies
        self.not_random = not_random
        self.queue: list[dict[str, Any]] = []
        self.random: dict[str, Any] | None = None
        self.injected: dict[str, int] = {}

    def _applies(self, fault: dict[str, Any], path: str) -> bool:
        if fault["path"] is not None:
            return bool(fault["path"] == path)
        return self.applies_to(fault["mode"], path)

    def take(self, path: str, rec: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The first queued fault that applies to ``path`` (its count taken), else a random
        one, else None; counted in ``injected`` either way, and its mode noted as the request
        record's ``fault`` when there is a record."""
        fault = self._take(path)
        if rec is not None:
            rec["fault"] = fault["mode"] if fault else None
        return fault

    def _take(self, path: str) -> dict[str, Any] | None:
        for f in self.queue:
            if f["count"] > 0 and self._applies(f, path):
                f["count"] -= 1
                taken = dict(f)
                self.queue = [g for g in self.queue if g["count"] > 0]
                self.injected[taken["mode"]] = self.injected.get(taken["mode"], 0) + 1
                return taken
        rnd = self.random
        if rnd is not None and rnd["rate"] > 0 and rnd["rng"].random() < rnd["rate"]:
            candidates = [t for t in rnd["templates"] if self._applies(t, path)]
            if candidates:
                taken = dict(rnd["rng"].choice(candidates))
                self.injected[taken["mode"]] = self.injected.get(taken["mode"], 0) + 1
                return taken
        return None

    def configure(self, body: Any) -> dict[str, Any]:
        """``POST /_admin/faults``: queue faults and/or set the random ones; the new state."""
        if isinstance(body, dict) and "random" in body and "mode" not in body:
            self.random = parse_random(body["random"], self.parse, self.not_random)
            if "faults" not in body:
                return self.to_json()
        if isinstance(body, list):
            items, replace = body, False
        elif isinstance(body, dict) and "faults" in body:
            items, replace = body["faults"], bool(body.get("replace", False))
            if not isinstance(items, list):
                raise FaultError("'faults' must be a list")
        else:
            items, replace = [body], False
        parsed = [self.parse(f) for f in items]
        self.queue = parsed if replace else self.queue + parsed
        return self.to_json()

    def to_json(self) -> dict[str, Any]:
        """``GET /_admin/faults``."""
        rnd = self.random
        return {
            "ok": True,
            "faults": self.queue,
            "random": None if rnd is None else {k: rnd[k] for k in ("rate", "modes", "seed")},
            "injected": dict(self.injected),
        }

    def reset(self) -> None:
        self.queue = []
        self.random = None
        self.injected = {}


async def start_fault(
    request: web.Request,
    fault: dict[str, Any] | None,
    rec: dict[str, Any],
    status_response: Callable[[dict[str, Any]], web.StreamResponse],
    drop_modes: tuple[str, ...] = ("drop",),
) -> web.StreamResponse | None:
    """The faults that act before the request is processed: a status fault's answer (built by
    ``status_response``), a dropped connection (raises ``Dropped``), a delay (then None,
    and the request goes on)."""
    if fault is None:
        return None
    if "status" in fault:
        rec["status"] = fault["status"]
        return status_response(fault)
    if fault["mode"] in drop_modes:
        rec["status"] = "dropped"
        abort_connection(request, reset=False)
        raise Dropped
    if fault["mode"] == "delay":
        await asyncio.sleep(fault["seconds"])
    return None


async def deliver(
    request: web.Request,
    data: bytes,
    fault: dict[str, Any] | None,
    rec: dict[str, Any],
    malformed: bytes,
) -> web.StreamResponse:
    """Send the finished JSON body ``data``, as the wire fault (if any) spoils it:
    ``truncated_json``, ``malformed_json`` (sends ``malformed``), ``reset`` and ``stall``
    (half the body, then a TCP reset; raises ``Dropped``)."""
    mode = fault["mode"] if fault else None
    if mode == "truncated_json":
        return web.Response(body=data[: len(data) // 2], content_type="application/json")
    if mode == "malformed_json":
        return web.Response(body=malformed, content_type="application/json")
    if fault is not None and mode in ("reset", "stall"):
        rec["status"] = mode
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: max(1, len(data) // 2)])
        # let the client read the headers and the half body (stall: and time out)
        await asyncio.sleep(fault.get("seconds", 0.2) if mode == "stall" else 0.2)
        abort_connection(request, reset=True)
        raise Dropped
    return web.Response(body=data, content_type="application/json")
