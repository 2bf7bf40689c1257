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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fasttito.config import redact_url
from fasttito.errors import RequestTimeoutError, ResponseTooLargeError, TransportError

__all__ = ["AiohttpPoster", "HttpResponse", "HttpxPoster", "Poster", "make_poster"]

_CHUNK = 1 << 16


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
    chunks: AsyncIterator[bytes], status: int, limit: int, url: str
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
    return HttpResponse(status, bytes(buf), False)


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
                raise RuntimeError(
                    "this fasttito.Client's HTTP session belongs to another event loop; create "
                    "one Client per event loop"
                )
            return self._session
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0)
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
        import aiohttp

        session = self._get_session()
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                limit = max_bytes if status < 400 else max_error_bytes
                declared = resp.content_length
                if status < 400 and declared is not None:
                    if declared > limit:
                        raise _too_large(url, limit, declared)
                    if not resp.headers.get("Content-Encoding"):
                        # aiohttp stops at Content-Length: one read, no second copy
                        return HttpResponse(status, await resp.read())
                return await _read_bounded(resp.content.iter_chunked(_CHUNK), status, limit, url)
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
        try:
            async with asyncio.timeout(timeout):
                async with self._client.stream(
                    method, url, content=body, headers=dict(headers), timeout=timeout
                ) as resp:
                    status = resp.status_code
                    limit = max_bytes if status < 400 else max_error_bytes
                    declared = resp.headers.get("content-length")
                    if status < 400 and declared is not None and declared.isdigit():
                        if int(declared) > limit:
                            raise _too_large(url, limit, int(declared))
                    return await _read_bounded(resp.aiter_bytes(), status, limit, url)
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
