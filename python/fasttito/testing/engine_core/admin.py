"""The admin API every test engine has (JSON in, JSON out; never authenticated, never
recorded):

* ``POST /_admin/script`` / ``GET /_admin/script``: replace / show the completion script
  (``fasttito.testing.vllm_engine.script``).
* ``GET /_admin/requests``: the recorded requests
  (``fasttito.testing.engine_core.http.RequestLog``).
* ``POST /_admin/reset``: clear the requests, the faults and the caches; the script back to its
  default.
* ``POST /_admin/faults`` / ``GET /_admin/faults``: queue faults or set random ones / show them
  (``fasttito.testing.engine_core.faults``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from fasttito.testing.engine_core.faults import FaultBook
from fasttito.testing.engine_core.http import RequestLog, json_response

__all__ = ["AdminState", "add_admin_routes"]


class AdminState(Protocol):
    """What the admin routes need of an engine's state."""

    last_activity: float
    faults: FaultBook
    log: RequestLog

    def set_script(self, body: Any) -> None:
        """Replace the script with the one ``body`` describes."""

    def script_json(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...


def add_admin_routes(
    app: web.Application,
    st: AdminState,
    read_body: Callable[[web.Request], Awaitable[Any]],
    errors: tuple[type[Exception], ...],
    error_response: Callable[[Exception], web.Response],
) -> None:
    """Add the ``/_admin/*`` routes: ``read_body`` parses a POST body, an exception of one of
    ``errors`` is answered with ``error_response`` (the engine's error shape)."""

    def admin(fn: Callable[[Any], dict[str, Any]]) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            st.last_activity = time.monotonic()
            try:
                body = await read_body(request) if request.method == "POST" else None
                return json_response(fn(body))
            except errors as exc:
                return error_response(exc)

        return handler

    async def reset(request: web.Request) -> web.StreamResponse:
        st.last_activity = time.monotonic()
        st.reset()  # the body, if any, is not read
        return json_response({"ok": True})

    def set_script(body: Any) -> dict[str, Any]:
        st.set_script(body)
        return get_script(None)

    def get_script(_: Any) -> dict[str, Any]:
        return {"ok": True, "script": st.script_json()}

    app.router.add_post("/_admin/script", admin(set_script))
    app.router.add_get("/_admin/script", admin(get_script))
    app.router.add_get("/_admin/requests", admin(lambda _: st.log.to_json()))
    app.router.add_post("/_admin/reset", reset)
    app.router.add_post("/_admin/faults", admin(st.faults.configure))
    app.router.add_get("/_admin/faults", admin(lambda _: st.faults.to_json()))
