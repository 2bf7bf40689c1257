"""HTTP pieces every test engine uses: JSON answers, the request log, cutting a connection."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = [
    "REDACTED_HEADERS",
    "Dropped",
    "RequestLog",
    "abort_connection",
    "json_response",
    "not_found",
]

#: Header values a recorded request never shows (names compared lower-case).
REDACTED_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key", "api-key")


def json_response(payload: Any, status: int = 200) -> web.Response:
    """``payload`` as a JSON answer (UTF-8, non-ASCII kept as is)."""
    return web.Response(
        body=json.dumps(payload, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


def not_found(rec: dict[str, Any] | None = None) -> web.Response:
    """FastAPI's 404 body, which vLLM and SGLang both answer on an unknown (or disabled) route;
    noted in the request's record ``rec`` when there is one."""
    if rec is not None:
        rec["status"] = 404
    return json_response({"detail": "Not Found"}, 404)


class Dropped(Exception):
    """A fault closed the connection: nothing more to send (the handler is cancelled)."""


def abort_connection(request: web.Request, reset: bool) -> None:
    """Close the client's connection without an answer; ``reset``: with a TCP RST (SO_LINGER
    0) instead of a FIN."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()
    else:
        transport.close()


class RequestLog:
    """The last ``limit`` requests an engine received (``GET /_admin/requests``), oldest first.

    A record starts with what arrived (``seq``, ``time``, ``method``, ``path``, the headers with
    ``REDACTED_HEADERS`` values replaced by ``"<redacted>"``, the JSON body) and what the
    engine fills in while answering (``prompt_ids``, ``completion_ids``, ``status``, ``fault``,
    ``error``, ``history_stable``, ``derived``), plus each engine's own fields.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.records: list[dict[str, Any]] = []
        self.seq = 0

    def add(
        self, method: str, path: str, headers: Mapping[str, str], body: Any, **extra: Any
    ) -> dict[str, Any]:
        """A new record (kept when ``limit`` > 0; the caller fills it in as it answers)."""
        self.seq += 1
        rec: dict[str, Any] = {
            "seq": self.seq,
            "time": time.time(),
            "method": method,
            "path": path,
            "headers": {
                k.lower(): "<redacted>" if k.lower() in REDACTED_HEADERS else v
                for k, v in headers.items()
            },
            "body": body,
            "prompt_ids": None,
            "completion_ids": None,
            "status": None,
            "fault": None,
            "error": None,
            "history_stable": None,
            "derived": None,
        }
        rec.update(extra)
        if self.limit > 0:
            self.records.append(rec)
            if len(self.records) > self.limit:
                del self.records[: len(self.records) - self.limit]
        return rec

    def clear(self) -> None:
        self.records = []

    def to_json(self) -> dict[str, Any]:
        return {"count": len(self.records), "requests": self.records}
