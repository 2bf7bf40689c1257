"""The HTTP seam: a :class:`Poster` sends one request and reads a bounded body.

Two implementations: :class:`AiohttpPoster` (the default: one ``aiohttp.ClientSession`` per
Client over a ``TCPConnector`` sized for thousands of concurrent rollouts) and
:class:`HttpxPoster` (wraps a caller's ``httpx.AsyncClient``, e.g. for proxies or custom auth;
it costs several times more CPU per request: docs/performance.md, "HTTP at scale").

A Poster does one attempt: it raises :class:`~fasttito.errors.TransportError` (connection
refused, reset, closed, body cut short) or :class:`~fasttito.errors.RequestTimeoutError`, and
returns every HTTP status as an :class:`HttpResponse`; retries, backoff and status policy are
the Client's. Bodies are read in chunks up to a limit and never past it
(:class:`~fasttito.errors.ResponseTooLargeError`). Header values are never put in an error.

While an attempt runs, the built-in Posters keep its :class:`AttemptProgress` (the Client's, from
:func:`current_attempt`) up to date: waiting for a connection, for the headers, or for the body,
so that a timeout can say which (docs/reliability-bounds.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fasttito.config import redact_url
from fasttito.errors import (
    EventLoopError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
)

__all__ = [
    "AiohttpPoster",
    "AttemptProgress",
    "HttpResponse",
    "HttpxPoster",
    "Poster",
    "current_attempt",
    "make_poster",
]

_CHUNK = 1 << 16


class AttemptProgress:
    """What one HTTP attempt is waiting for. The Client makes one per attempt (a Poster finds
    it with :func:`current_attempt`); the built-in Posters move ``phase`` from
    ``"connection"`` to ``"headers"`` to ``"body"`` and count the body bytes, so a timeout
    names the step that ran out of time. A Poster that does not update it leaves
    ``"response"``."""

    __slots__ = ("busy", "expected", "phase", "received", "stream")

    def __init__(self) -> None:
        self.phase = "response"
        #: connections in use when the attempt asked for one, and the pool size (0: no limit)
        self.busy: tuple[int, int] | None = None
        self.received = 0
        self.expected: int | None = None
        self.stream: Any = None  # aiohttp's StreamReader while ``resp.read()`` reads it

    def describe(self) -> str:
        """The phase in words, e.g. ``the response body (512 of 1024 bytes)``."""
        if self.phase == "connection":
            if self.busy is not None and 0 < self.busy[1] <= self.busy[0]:
                return (
                    f"a free connection (all max_connections={self.busy[1]} were in use by "
                    "other requests of this Client)"
                )
            return "a connection to the server"
        if self.phase == "headers":
            return "the response headers"
        if self.phase == "body":
            got = self.received
            if self.stream is not None:
                got = max(got, int(getattr(self.stream, "total_bytes", 0) or 0))
            of = f" of {self.expected}" if self.expected is not None else ""
            return f"the response body ({got}{of} bytes received)"
        return "the response"


_ATTEMPT: ContextVar[AttemptProgress | None] = ContextVar("fasttito_attempt", default=None)


def current_attempt() -> AttemptProgress:
    """The :class:`AttemptProgress` of the attempt running in this task (a detached one when
    a Poster is called outside a Client)."""
    return _ATTEMPT.get() or AttemptProgress()


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One HTTP answer: the status and the body (whole when ``status < 400``; for error
    statuses at most ``max_error_bytes``, ``truncated`` telling whether more was left)."""

    status: int
    body: bytes
    truncated: bool = False


@runtime_checkable
class Poster(Protocol):
    """One HTTP attempt. ``max_bytes`` bounds a success body (over it:
    ``ResponseTooLargeError``); error bodies are cut at ``max_error_bytes``."""

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        *,
        headers: Mapping[str, str],
        timeout: float,
        max_bytes: int,
        max_error_bytes: int,
    ) -> HttpResponse: ...

    async def aclose(self) -> None: ...


def _too_large(url: str, limit: int, declared: int | None = None) -> ResponseTooLargeError:
    what = f"declares {declared} bytes" if declared is not None else "continues"
    return ResponseTooLargeError(
        f"the response of {redact_url(url)} {what} past max_body_bytes={limit}; raise "
        "max_body_bytes on the Client if the server legitimately sends bodies this large "
        "(routed_experts blobs)"
    )


async def _read_bounded(
    chunks: AsyncIterator[bytes],
    status: int,
    limit: int,
    url: str,
    progress: AttemptProgress | None = None,
) -> HttpResponse:
    """Reads a body chunk by chunk, never holding more than ``limit`` bytes: a success body
    past the limit is a ``ResponseTooLargeError``; an error body is cut (and marked truncated),
    since only its beginning goes into the ``ServerError``."""
    buf = bytearray()
    async for chunk in chunks:
        if len(buf) + len(chunk) > limit:
            if status < 400:
                raise _too_large(url, limit)
            buf += chunk[: limit - len(buf)]
            return HttpResponse(status, bytes(buf), True)
        buf += chunk
        if progress is not None:
            progress.received = len(buf)
    return HttpResponse(status, bytes(buf), False)


_CONNECTOR: Any = None


def _connector_class() -> Any:
    """``aiohttp.TCPConnector`` telling the running attempt when it has its connection (and
    how busy the pool was when it asked), built on first use (aiohttp is imported lazily)."""
    global _CONNECTOR
    if _CONNECTOR is None:
        import aiohttp

        class TrackingConnector(aiohttp.TCPConnector):
            in_use = 0

            async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
                progress = _ATTEMPT.get()
                if progress is not None:
                    progress.phase = "connection"
                    progress.busy = (self.in_use, self.limit)
                conn = await super().connect(req, traces, timeout)
                self.in_use += 1
                conn.add_callback(self._released)
                if progress is not None:
                    progress.phase = "headers"
                return conn

            def _released(self) -> None:
                self.in_use -= 1

        _CONNECTOR = TrackingConnector
    return _CONNECTOR


_TIMEOUTS: dict[float, Any] = {}
_NO_TIMEOUT: dict[None, Any] = {}
_AIOHTTP: Any = None


def _aiohttp() -> Any:
    """The aiohttp module, imported on first use (fasttito imports without it)."""
    global _AIOHTTP
    if _AIOHTTP is None:
        import aiohttp

        _AIOHTTP = aiohttp
    return _AIOHTTP


class AiohttpPoster:
    """The default Poster: a lazily created ``aiohttp.ClientSession`` (created on first use, in
    the running event loop) with ``TCPConnector(limit=max_connections)``."""

    __slots__ = ("_limit", "_loop", "_session")

    def __init__(self, *, max_connections: int = 4096) -> None:
        self._limit = max_connections
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._session is not None and not self._session.closed:
            if self._loop is not loop:
                raise EventLoopError(
                    "this fasttito.Client's HTTP session belongs to another event loop; create "
                    "one Client per event loop"
                )
            return self._session
        import aiohttp

        connector = _connector_class()(limit=self._limit, limit_per_host=0)
        # Content-Type is set per request; no cookie jar (a rollout client needs none)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False
        )
        self._loop = loop
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        *,
        headers: Mapping[str, str],
        timeout: float,
        max_bytes: int,
        max_error_bytes: int,
    ) -> HttpResponse:
        session = self._get_session()
        aiohttp = _aiohttp()
        attempt = _ATTEMPT.get()
        progress = attempt or AttemptProgress()
        if attempt is not None:
            # a Client's attempt: it runs under the Client's own asyncio.timeout(timeout), so a
            # second timer here would only cost (one timer handle per request at 1,000 rollouts)
            client_timeout = _NO_TIMEOUT.get(None)
            if client_timeout is None:
                client_timeout = _NO_TIMEOUT[None] = aiohttp.ClientTimeout(total=None)
        else:
            # one ClientTimeout per distinct timeout (they are frozen), not one per request
            client_timeout = _TIMEOUTS.get(timeout)
            if client_timeout is None:
                if len(_TIMEOUTS) > 64:  # a caller cycling through timeouts: keep it bounded
                    _TIMEOUTS.clear()
                client_timeout = _TIMEOUTS[timeout] = aiohttp.ClientTimeout(total=timeout)
        try:
            # aiohttp copies the headers into its own multidict: no copy of ours needed
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=client_timeout,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                limit = max_bytes if status < 400 else max_error_bytes
                declared = resp.content_length
                progress.phase, progress.expected = "body", declared
                if status < 400 and declared is not None:
                    if declared > limit:
                        raise _too_large(url, limit, declared)
                    if not resp.headers.get("Content-Encoding"):
                        # aiohttp stops at Content-Length: one read, no second copy
                        progress.stream = resp.content
                        return HttpResponse(status, await resp.read())
                return await _read_bounded(
                    resp.content.iter_chunked(_CHUNK), status, limit, url, progress
                )
        except ResponseTooLargeError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise RequestTimeoutError(
                f"{method} {redact_url(url)} took longer than timeout={timeout:g}s"
            ) from _strip(exc)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise TransportError(
                f"{method} {redact_url(url)} failed: {type(exc).__name__}: {_describe(exc)}"
            ) from _strip(exc)
        except aiohttp.ClientResponseError as exc:
            raise TransportError(
                f"{method} {redact_url(url)} failed: {type(exc).__name__} (status {exc.status})"
            ) from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


class HttpxPoster:
    """A Poster over a caller's ``httpx.AsyncClient`` (or an ``httpx2`` one: same API). The
    caller owns the client: :meth:`aclose` does not close it."""

    __slots__ = ("_client", "_owned")

    def __init__(self, client: Any, *, owned: bool = False) -> None:
        self._client = client
        self._owned = owned

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        *,
        headers: Mapping[str, str],
        timeout: float,
        max_bytes: int,
        max_error_bytes: int,
    ) -> HttpResponse:
        mod = _httpx_module(self._client)
        progress = current_attempt()
        progress.phase = "headers"  # httpx does not say when it has a connection
        try:
            async with asyncio.timeout(timeout):
                async with self._client.stream(
                    method, url, content=body, headers=dict(headers), timeout=timeout
                ) as resp:
                    status = resp.status_code
                    limit = max_bytes if status < 400 else max_error_bytes
                    declared = resp.headers.get("content-length")
                    progress.phase = "body"
                    if declared is not None and declared.isdigit():
                        progress.expected = int(declared)
                    if status < 400 and declared is not None and declared.isdigit():
                        if int(declared) > limit:
                            raise _too_large(url, limit, int(declared))
                    return await _read_bounded(resp.aiter_bytes(), status, limit, url, progress)
        except ResponseTooLargeError:
            raise
        except (TimeoutError, mod.TimeoutException) as exc:
            raise RequestTimeoutError(
                f"{method} {redact_url(url)} took longer than timeout={timeout:g}s"
            ) from _strip(exc)
        except mod.TransportError as exc:
            raise TransportError(
                f"{method} {redact_url(url)} failed: {type(exc).__name__}: {_describe(exc)}"
            ) from _strip(exc)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()


def _httpx_module(client: Any) -> Any:
    """``httpx`` or ``httpx2``, whichever the client comes from (for its exception classes)."""
    import importlib

    cls = client if isinstance(client, type) else type(client)
    # a subclass (openai's AsyncHttpxClientWrapper) lives elsewhere: find its httpx base
    roots = [c.__module__.split(".", 1)[0] for c in cls.__mro__]
    name = next((r for r in roots if r in ("httpx", "httpx2")), roots[0])
    try:
        return importlib.import_module(name)
    except ImportError:
        import httpx

        return httpx


def make_poster(http_client: Any, *, max_connections: int) -> Poster:
    """The Poster for ``Client(http_client=...)``: None -> aiohttp; an httpx(2)
    ``AsyncClient`` instance -> :class:`HttpxPoster` (the caller closes it); the class
    ``httpx.AsyncClient`` -> one instance owned (and closed) by the Client; a :class:`Poster`
    as is."""
    if http_client is None:
        return AiohttpPoster(max_connections=max_connections)
    if isinstance(http_client, type) and http_client.__module__.split(".", 1)[0] in (
        "httpx",
        "httpx2",
    ):
        # the class itself (``http_client=httpx.AsyncClient``): one instance, owned here
        return HttpxPoster(
            http_client(
                limits=_httpx_module(http_client).Limits(max_connections=max_connections or None)
            ),
            owned=True,
        )
    if type(http_client).__module__.split(".", 1)[0] in ("httpx", "httpx2"):
        return HttpxPoster(http_client)
    if isinstance(http_client, Poster):
        return http_client
    from fasttito.errors import ConfigError

    raise ConfigError(
        f"http_client must be None (aiohttp), an httpx.AsyncClient or a fasttito.http.Poster, got "
        f"{type(http_client).__name__}"
    )


def _describe(exc: BaseException) -> str:
    """The exception's text without anything from the request (aiohttp puts the request info,
    never its headers, in a few messages; httpx none)."""
    text = str(exc) or type(exc).__name__
    return text[:300]


def _strip(exc: BaseException) -> BaseException | None:
    """The cause to chain: the original exception, unless it carries the request (httpx
    exceptions hold ``.request`` with its headers, which a traceback printer never shows, but a
    debugger or a logging extension might)."""
    if getattr(exc, "_request", None) is not None or hasattr(exc, "request_info"):
        return None
    return exc
