"""``fasttito.Client``: multi-turn token-in/token-out rollouts against real servers.

::

    client = fasttito.Client(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen3-8B",
                             transport="dynamo-nvext", tokenizer="path/to/model")
    async with client:
        rollout = client.rollout()
        turn = await rollout.generate(messages, tools=tools, cache_salt="step-7")
        messages.append(turn.message())

Policy lives here (transport choice, HTTP retries, length checks, secrets); the request bodies
and response parsing are Rust (``_core.request_body``, ``_core.parse_response``); the TITO
plan of every turn is the rollout's (:class:`fasttito.Rollout`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import random
import uuid
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal

from fasttito import _core
from fasttito.config import ClientConfig, redact_url
from fasttito.errors import (
    ConfigError,
    DeadlineExceededError,
    OverlongPromptError,
    RequestTimeoutError,
    RolloutLimitError,
    ServerError,
    TransportError,
    UnsupportedRouteError,
)
from fasttito.http import _ATTEMPT, AttemptProgress, HttpResponse, Poster, make_poster
from fasttito.metrics import count_error
from fasttito.rollout import (
    DEFAULT_MAX_ROLLOUT_MESSAGES,
    DEFAULT_MAX_ROLLOUT_TOKENS,
    Rollout,
    Sample,
    TrajectoryError,
)
from fasttito.transports import TRANSPORT_CLASSES, Transport, Turn
from fasttito.transports._base import GenerateArgs, RolloutState

__all__ = ["Client", "ClientRollout", "Turn"]

logger = logging.getLogger("fasttito")

RETRY_STATUSES = frozenset({502, 503, 504})
# vLLM's default --max-logprobs
MAX_TOP_LOGPROBS = 20


class _CallBudget:
    """The time one ``rollout.generate`` call may still spend, shared by every request it makes
    (the ``auto`` probe, ``GET /v1/models``, ``/tokenize``, the completion). The Client's bound
    (:attr:`Client.max_call_seconds`) counts the time spent waiting: an attempt at most its
    timeout, a pause at most its length (running late is the event loop's, local work), a wait
    on another call's request all of it; so a call of one request is never cut short by it.
    The caller's ``deadline=`` counts the wall clock from the call's start."""

    __slots__ = ("bound", "deadline", "start", "until", "wait_left")

    def __init__(self, now: float, bound: float, deadline: float | None) -> None:
        self.start = now
        self.bound = bound
        self.wait_left = bound
        self.deadline = deadline
        self.until = now + deadline if deadline is not None else math.inf

    def left(self, now: float) -> float:
        return min(self.wait_left, self.until - now)

    def expired(
        self,
        now: float,
        what: str,
        *,
        attempt: int,
        attempts: int,
        waiting_for: str,
        detail: str,
    ) -> DeadlineExceededError:
        if self.until - now <= self.wait_left:
            assert self.deadline is not None
            cap, which = self.deadline, f"deadline={self.deadline:g}s"
        else:
            cap, which = self.bound, f"bound max_call_seconds={self.bound:g}s"
        elapsed = now - self.start
        return DeadlineExceededError(
            f"{what}: the call's {which} ran out after {elapsed:.2f}s, {detail}",
            attempt=attempt,
            attempts=attempts,
            waiting_for=waiting_for,
            deadline=cap,
            elapsed=elapsed,
        )


_BUDGET: ContextVar[_CallBudget | None] = ContextVar("fasttito_call_budget", default=None)


class Client:
    """A connection to one served model, shared by any number of concurrent rollouts.

    Args:
        base_url: the server, with or without the ``/v1`` suffix (``http://host:8000/v1``).
        model: the served model name.
        transport: ``"vllm-generate"``, ``"vllm-chat-tokens"``, ``"dynamo-nvext"``,
            ``"sglang-generate"``, ``"chat"``, ``"auto"`` (probe ``/v1/models`` and the routes
            once, then pick; see :meth:`probe`) or an alias (``vllm_generate``,
            ``prime_vllm_generate``, ``dynamo_chat_nvext``, ``dynamo``, ``dynamo_chat``,
            ``sglang``, ``sglang_generate``). Unknown names raise :class:`ConfigError`.
        tokenizer: a :class:`fasttito.Tokenizer` or a model folder to load one from. Needed by
            ``vllm-generate``, ``dynamo-nvext`` and ``sglang-generate``; ``vllm-chat-tokens``
            uses the server's ``/tokenize`` without one.
        api_key: sent as ``Authorization: Bearer ...``; never in a repr, an error or a log.
        headers: extra headers of every request; their values are treated like the api key.
        timeout: seconds for each HTTP attempt, from the moment it is queued (waiting for a
            pooled connection included) to the last byte of the body.
        max_retries: retries of connection errors, timeouts and 502/503/504 answers, with
            exponential backoff (``backoff`` * 2**attempt, at most ``backoff_max``, times a
            jitter in [0.5, 1]). 4xx answers are never retried. One ``rollout.generate`` call
            therefore ends, with a turn or a typed error, within :attr:`max_call_seconds`
            (``timeout * (max_retries + 1)`` plus the backoff sum, see there) plus its local
            work; a call making several requests shares that time, and ``generate(...,
            deadline=s)`` caps a call shorter (:class:`DeadlineExceededError`). See
            docs/reliability-bounds.md.
        http_client: None (fasttito's own aiohttp session), an ``httpx.AsyncClient`` (owned by
            the caller), or any :class:`fasttito.http.Poster`.
        stop_token_ids: the ids a turn may end on (default: the tokenizer's).
        verify: re-render every TITO prompt in full and log differences (slow; debugging).
        max_connections: the aiohttp connection pool size (0: unlimited).
        max_body_bytes: the largest response body read (larger: ``ResponseTooLargeError``).
        chat_target: which keys the ``chat`` transport's bodies may carry: ``"vllm"`` (the
            default; asks for token ids and sends ``cache_salt``/``priority`` at the root),
            ``"dynamo"`` (the default when ``auto`` found Dynamo) or ``"openai"`` (strict
            OpenAI servers: no vLLM-only key, so no ``cache_salt``, ``priority`` or ids).
        dynamo_first_turn: ``"tokens"`` (turn 1 and fallbacks as locally rendered
            ``nvext.token_data``) or ``"messages"`` (Dynamo renders them).
        check_prompt_length: raise :class:`OverlongPromptError` before sending a prompt of
            ``max_model_len`` ids or more (read once from ``GET /v1/models``; on
            ``sglang-generate`` without one there, ``max_req_input_len`` of ``GET
            /server_info``).
        max_json_depth: the deepest nesting of arrays/objects accepted in a response (at most
            127); deeper: :class:`ResponseParseError` naming ``max_depth``.
        template_fuel, template_recursion: the render budget of the chat template, used when
            ``tokenizer`` is a folder (see ``Tokenizer.from_dir``); exceeded:
            :class:`TemplateLimitError` naming the setting.
        max_rollout_messages: the most messages one conversation may have; more:
            :class:`RolloutLimitError` before anything is sent.
        max_rollout_tokens: the most prompt ids one turn may have; more:
            :class:`RolloutLimitError` before anything is sent.
        routing_key_header: send each rollout's routing key (:attr:`ClientRollout.routing_key`,
            stable for the whole conversation) in this header on every request of that rollout,
            so a router that hashes on it keeps the rollout on one replica and its prefix cache
            (``"X-SMG-Routing-Key"`` for sglang-router's ``consistent_hashing`` policy; see
            docs/sglang.md). fasttito itself does no load balancing.
        routing_key_buckets: send ``hash(routing key) % routing_key_buckets`` instead of the
            key: for headers that take a replica number, such as vLLM's
            ``X-data-parallel-rank`` with the data-parallel size.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        transport: str = "auto",
        tokenizer: _core.Tokenizer | str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
        http_client: Any = None,
        *,
        stop_token_ids: Sequence[int] | None = None,
        verify: bool = False,
        max_connections: int = 4096,
        max_body_bytes: int = 1 << 30,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        chat_target: Literal["openai", "vllm", "dynamo"] | None = None,
        dynamo_first_turn: Literal["tokens", "messages"] = "tokens",
        check_prompt_length: bool = True,
        max_json_depth: int = 64,
        template_fuel: int = 5_000_000,
        template_recursion: int = 200,
        max_rollout_messages: int = DEFAULT_MAX_ROLLOUT_MESSAGES,
        max_rollout_tokens: int = DEFAULT_MAX_ROLLOUT_TOKENS,
        routing_key_header: str | None = None,
        routing_key_buckets: int | None = None,
    ) -> None:
        self.config = ClientConfig(
            base_url=base_url,
            model=model,
            transport=transport,
            api_key=api_key,
            headers=dict(headers or {}),
            timeout=float(timeout),
            max_retries=max_retries,
            backoff=backoff,
            backoff_max=backoff_max,
            max_connections=max_connections,
            max_body_bytes=max_body_bytes,
            chat_target=chat_target,
            dynamo_first_turn=dynamo_first_turn,
            check_prompt_length=check_prompt_length,
            max_json_depth=max_json_depth,
            template_fuel=template_fuel,
            template_recursion=template_recursion,
            max_rollout_messages=max_rollout_messages,
            max_rollout_tokens=max_rollout_tokens,
            routing_key_header=routing_key_header,
            routing_key_buckets=routing_key_buckets,
        )
        if tokenizer is not None and not isinstance(tokenizer, _core.Tokenizer):
            tokenizer = _core.Tokenizer.from_dir(
                tokenizer, template_fuel=template_fuel, template_recursion=template_recursion
            )
        self.tokenizer: _core.Tokenizer | None = tokenizer
        if stop_token_ids is None and tokenizer is not None:
            stop_token_ids = tokenizer.stop_token_ids
        self.stop_token_ids: list[int] | None = (
            [int(t) for t in stop_token_ids] if stop_token_ids is not None else None
        )
        self.verify = verify
        self._poster: Poster = make_poster(http_client, max_connections=max_connections)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._headers.update(self.config.headers)
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._secrets = self.config.secrets()
        self.chat_target: str = self.config.chat_target or "vllm"
        self._transport: Transport | None = None
        if self.config.transport != "auto":
            self._transport = self._make_transport(self.config.transport)
        self._models: dict[str, Any] | None = None
        self._models_known = False
        self._probe_lock: asyncio.Lock | None = None
        self._models_lock: asyncio.Lock | None = None
        self._server_info: dict[str, Any] | None = None
        self._server_info_known = False
        self._max_call: tuple[ClientConfig, float] | None = None

    # -- public -----------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.config.model

    @property
    def transport(self) -> str:
        """The transport in use; ``"auto"`` until :meth:`probe` (or the first turn) ran."""
        return self._transport.name if self._transport is not None else "auto"

    @property
    def max_call_seconds(self) -> float:
        """The most seconds one ``rollout.generate`` call spends waiting on the network:
        ``timeout * (max_retries + 1)`` plus the backoff sum ``min(backoff_max, backoff *
        2**k)`` for ``k`` in ``0 .. max_retries - 1`` (the jitter only shortens a pause). The
        call ends within this plus its local work (milliseconds: rendering, parsing), with a
        turn or a typed error; size a watchdog from it. With the defaults (600 s, 2 retries,
        0.5 s backoff): 1801.5 s."""
        cfg = self.config
        known = self._max_call
        if known is not None and known[0] is cfg:  # one sum per configuration, not per call
            return known[1]
        pauses = sum(min(cfg.backoff_max, cfg.backoff * 2**k) for k in range(cfg.max_retries))
        bound = float(cfg.timeout * (cfg.max_retries + 1) + pauses)
        self._max_call = (cfg, bound)
        return bound

    def rollout(self, routing_key: str | None = None) -> ClientRollout:
        """A new multi-turn conversation. ``routing_key`` (default: a random UUID) is sent in
        the ``routing_key_header`` on every request of this conversation when that is set."""
        return ClientRollout(self, routing_key)

    def routing_headers(self, routing_key: str) -> dict[str, str] | None:
        """The headers that carry ``routing_key`` (None without ``routing_key_header``)."""
        header = self.config.routing_key_header
        if header is None:
            return None
        buckets = self.config.routing_key_buckets
        if buckets is None:
            return {header: routing_key}
        digest = hashlib.blake2b(routing_key.encode(), digest_size=8).digest()
        return {header: str(int.from_bytes(digest, "big") % buckets)}

    async def probe(self) -> str:
        """Resolve ``transport="auto"`` once: ``GET /v1/models`` (Dynamo lists its models as
        ``owned_by: "nvidia"``, SGLang as ``owned_by: "sglang"``), else SGLang's ``GET
        /get_model_info`` / ``GET /server_info``, then whether ``{root}/inference/v1/generate``
        and ``/v1/chat/completions/tokens`` exist (an empty POST answered with anything but
        404/405). Picks ``dynamo-nvext`` on Dynamo, ``sglang-generate`` on SGLang (with a
        tokenizer), else ``vllm-generate`` (with a tokenizer), else ``vllm-chat-tokens``, else
        ``chat``. Logged at INFO; returns the transport id."""
        if self._transport is not None:
            return self._transport.name
        lock = self._lock()
        await self._acquire(lock, "probe", "the transport probe (transport='auto')")
        try:
            if self._transport is not None:
                return self._transport.name
            name, why = await self._choose()
            self._transport = self._make_transport(name)
            logger.info(
                "fasttito: transport %s for %s (%s)", name, redact_url(self.config.base_url), why
            )
            return name
        finally:
            lock.release()

    async def aclose(self) -> None:
        """Close fasttito's own HTTP session (a caller's ``http_client`` stays open)."""
        await self._poster.aclose()

    async def __aenter__(self) -> Client:
        if self._transport is None:
            await self.probe()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"Client(base_url={redact_url(self.config.base_url)!r}, model={self.config.model!r}, "
            f"transport={self.transport!r}, api_key={'<set>' if self.config.api_key else None}, "
            f"headers={sorted(self.config.headers)!r})"
        )

    # -- transports ---------------------------------------------------------------------------
    def _make_transport(self, name: str) -> Transport:
        cls = TRANSPORT_CLASSES[name]
        if cls.needs_tokenizer and self.tokenizer is None:
            raise ConfigError(
                f"transport {name!r} renders prompts locally and needs a tokenizer: pass "
                "tokenizer=<model folder or fasttito.Tokenizer> to the Client (vllm-chat-tokens "
                "and chat work without one)"
            )
        return cls(_ClientSession(self))

    async def _transport_for_turn(self) -> Transport:
        if self._transport is None:
            await self.probe()
        assert self._transport is not None
        return self._transport

    async def _choose(self) -> tuple[str, str]:
        models = await self._model_info()
        owner = str((models or {}).get("owned_by") or "").lower()
        if owner in ("nvidia", "dynamo"):
            if self.tokenizer is not None:
                return "dynamo-nvext", "GET /v1/models: owned_by nvidia (Dynamo)"
            if self.config.chat_target is None:
                self.chat_target = "dynamo"
            return "chat", "Dynamo without a local tokenizer: messages every turn"
        sglang = "GET /v1/models: owned_by sglang" if owner == "sglang" else None
        if sglang is None and models is None:
            sglang = await self._sglang_signature()
        if sglang is not None:
            if self.tokenizer is not None:
                return "sglang-generate", sglang
            return "chat", f"{sglang} without a local tokenizer: messages every turn"
        if self.tokenizer is not None and await self._route_exists(
            self.config.root_url + "/inference/v1/generate"
        ):
            return "vllm-generate", "POST /inference/v1/generate exists"
        if await self._route_exists(self.config.v1_url + "/chat/completions/tokens"):
            return "vllm-chat-tokens", "POST /v1/chat/completions/tokens exists"
        return "chat", "no token-in route found"

    async def _sglang_signature(self) -> str | None:
        """Why the server is SGLang (``GET /get_model_info`` names a ``model_path``, or ``GET
        /server_info`` has ``max_req_input_len``), or None."""
        resp = await self._send(
            "GET", self.config.root_url + "/get_model_info", None, "auto", error_status=False
        )
        if resp.status == 200:
            try:
                info = json.loads(resp.body)
            except ValueError:
                info = None
            if isinstance(info, dict) and "model_path" in info:
                return "GET /get_model_info answers (SGLang)"
        info = await self._fetch_server_info()
        if info is not None and "max_req_input_len" in info:
            return "GET /server_info answers (SGLang)"
        return None

    async def _fetch_server_info(self) -> dict[str, Any] | None:
        """SGLang's ``GET /server_info`` (fetched once), or None elsewhere."""
        if not self._server_info_known:
            resp = await self._send(
                "GET", self.config.root_url + "/server_info", None, "auto", error_status=False
            )
            info = None
            if resp.status == 200:
                try:
                    info = json.loads(resp.body)
                except ValueError:
                    info = None
            self._server_info = info if isinstance(info, dict) else None
            self._server_info_known = True
        return self._server_info

    async def _route_exists(self, url: str) -> bool:
        """Whether ``url`` takes requests: an empty POST answered with anything but 404/405, or
        a 403 that says the route is switched off (vLLM without ``--enable-scale-out``; logged
        once, naming the flag)."""
        resp = await self._send("POST", url, b"{}", "auto", error_status=False)
        if resp.status in (404, 405):
            return False
        if resp.status == 403:
            hint = route_hint(url, 403, resp.body.decode("utf-8", errors="replace")[:2000])
            if hint is not None:
                logger.warning("fasttito: auto: POST %s answered 403: %s", redact_url(url), hint)
            return False
        return True

    def _lock(self) -> asyncio.Lock:
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        return self._probe_lock

    async def _model_info(self) -> dict[str, Any] | None:
        """This model's entry of ``GET /v1/models`` (fetched once), or None if the server has
        no such route or does not list the model."""
        if self._models_known:
            return self._models
        if self._models_lock is None:
            self._models_lock = asyncio.Lock()
        # one GET however many rollouts start at once; the others wait within their own time
        await self._acquire(self._models_lock, "model_info", "GET /v1/models")
        try:
            if not self._models_known:
                self._models = await self._fetch_model_info()
                self._models_known = True
            return self._models
        finally:
            self._models_lock.release()

    async def _acquire(self, lock: asyncio.Lock, waiting_for: str, what: str) -> None:
        """Take ``lock``, held by another call while it sends ``what``, within this call's
        time (a waiter must not outlive its own bound because another call's request is slow)."""
        budget = _BUDGET.get()
        if budget is None or not lock.locked():
            await lock.acquire()
            return
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            async with asyncio.timeout(max(0.0, budget.left(t0))):
                await lock.acquire()
        except TimeoutError:
            raise budget.expired(
                loop.time(),
                "fasttito",
                attempt=0,
                attempts=self.config.max_retries + 1,
                waiting_for=waiting_for,
                detail=f"waiting for {what}, which another call was sending",
            ) from None
        finally:
            budget.wait_left -= loop.time() - t0

    async def _fetch_model_info(self) -> dict[str, Any] | None:
        resp = await self._send(
            "GET", self.config.v1_url + "/models", None, "auto", error_status=False
        )
        info: dict[str, Any] | None = None
        if resp.status == 200:
            try:
                data = json.loads(resp.body).get("data") or []
            except (ValueError, AttributeError):
                data = []
            entries = [d for d in data if isinstance(d, dict)]
            for d in entries:
                if d.get("id") == self.config.model:
                    info = d
                    break
            if info is None and entries:
                logger.warning(
                    "fasttito: model %r is not among the served models %s",
                    self.config.model,
                    [d.get("id") for d in entries][:20],
                )
        elif resp.status in (401, 403):
            raise self._server_error("GET", self.config.v1_url + "/models", resp, "auto", 0)
        return info

    async def _prompt_limit(self) -> int | None:
        """The server's context length (``GET /v1/models``: ``max_model_len``, Dynamo's
        ``context_window``), when the check is on and the server reports one."""
        if not self.config.check_prompt_length:
            return None
        return self._limit_of(await self._model_info())

    def _limit_of(self, info: dict[str, Any] | None) -> int | None:
        """The context length in a ``GET /v1/models`` entry, when the check is on."""
        if not info or not self.config.check_prompt_length:
            return None
        limit = (
            info.get("max_model_len") or info.get("context_window") or info.get("context_length")
        )
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            return limit
        return None

    async def _check_prompt_length(self, n: int, transport: str) -> None:
        if self._models_known or not self.config.check_prompt_length:
            limit = self._limit_of(self._models)  # known: no await on the hot path
        else:
            limit = await self._prompt_limit()
        source = "max_model_len"
        if limit is None and transport == "sglang-generate" and self.config.check_prompt_length:
            # SGLang behind a router that lists no length: the scheduler's own input limit
            # (``The input (N tokens) is longer than the model's context length``, docs/wire.md S)
            if self._models_lock is None:
                self._models_lock = asyncio.Lock()
            async with self._models_lock:
                server = await self._fetch_server_info()
            found = (server or {}).get("max_req_input_len")
            if isinstance(found, int) and not isinstance(found, bool) and found > 0:
                limit, source = found, "max_req_input_len (GET /server_info)"
        if limit is not None and n >= limit:
            raise OverlongPromptError(
                f"{transport}: the prompt has {n} tokens, the server's {source} is {limit}; "
                "the server would reject it, so it was not sent. Shorten the conversation (or "
                "end the rollout).",
                prompt_tokens=n,
                max_model_len=limit,
            )

    # -- HTTP -------------------------------------------------------------------------------
    async def _post(
        self,
        url: str,
        body: bytes,
        transport: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """POST ``body`` (JSON bytes, sent as they are); the success body, or a typed error.
        ``extra_headers`` are added to this request only (verifiers' per-state headers)."""
        return (await self._send("POST", url, body, transport, extra_headers=extra_headers)).body

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        transport: str,
        *,
        error_status: bool = True,
        extra_headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        cfg = self.config
        headers = {**self._headers, **extra_headers} if extra_headers else self._headers
        # Every attempt runs under asyncio.timeout: the Poster's own timeout may fire late
        # (aiohttp rounds totals of 5 s or more up to the next whole second) or not at all (a
        # Poster of the caller's); inside a generate call, the call's budget caps it too.
        budget = _BUDGET.get()
        loop = asyncio.get_running_loop()
        attempts = cfg.max_retries + 1
        attempt = 0
        while True:
            limit, cut = cfg.timeout, False
            if budget is not None:
                left = budget.left(loop.time())
                if left < limit - 1e-9:  # (not float noise of the bound's own sum)
                    limit, cut = left, True
                if limit <= 0:
                    raise budget.expired(
                        loop.time(),
                        f"{transport}: {method} {redact_url(url)}",
                        attempt=attempt + 1,
                        attempts=attempts,
                        waiting_for="start",
                        detail=f"before attempt {attempt + 1} of {attempts} could start (the "
                        "call's earlier requests used its time)",
                    )
            progress = AttemptProgress()
            token = _ATTEMPT.set(progress)
            t0 = loop.time()
            try:
                async with asyncio.timeout(limit):
                    resp = await self._poster.request(
                        method,
                        url,
                        body,
                        headers=headers,
                        timeout=limit,
                        max_bytes=cfg.max_body_bytes,
                        max_error_bytes=cfg.max_error_body_bytes,
                    )
            except TimeoutError:  # this guard's, or the Poster's RequestTimeoutError
                if budget is not None and cut:
                    raise budget.expired(
                        loop.time(),
                        f"{transport}: {method} {redact_url(url)}",
                        attempt=attempt + 1,
                        attempts=attempts,
                        waiting_for=progress.phase,
                        detail=f"on attempt {attempt + 1} of {attempts} (given the {limit:.3g}s "
                        f"left of its timeout={cfg.timeout:g}s), waiting for {progress.describe()}",
                    ) from None
                failure: TransportError = RequestTimeoutError(
                    f"{method} {redact_url(url)} took longer than timeout={limit:g}s (attempt "
                    f"{attempt + 1} of {attempts}, waiting for {progress.describe()})",
                    attempt=attempt + 1,
                    attempts=attempts,
                    waiting_for=progress.phase,
                )
            except TransportError as exc:
                failure = exc
            else:
                if resp.status in RETRY_STATUSES and attempt < cfg.max_retries:
                    await self._backoff(attempt, method, url, f"HTTP {resp.status}", transport)
                    attempt += 1
                    continue
                if resp.status >= 400 and error_status:
                    raise self._server_error(method, url, resp, transport, attempt)
                return resp
            finally:
                _ATTEMPT.reset(token)
                if budget is not None:
                    budget.wait_left -= min(loop.time() - t0, limit)
            if attempt >= cfg.max_retries:
                text = self._redact(self._with_retries(str(failure), attempt))
                if isinstance(failure, RequestTimeoutError):
                    raise RequestTimeoutError(
                        text,
                        attempt=failure.attempt,
                        attempts=failure.attempts,
                        waiting_for=failure.waiting_for,
                    ) from None
                raise type(failure)(text) from None
            await self._backoff(attempt, method, url, type(failure).__name__, transport)
            attempt += 1

    async def _backoff(
        self, attempt: int, method: str, url: str, why: str, transport: str = ""
    ) -> None:
        cfg = self.config
        delay = min(cfg.backoff_max, cfg.backoff * (2**attempt)) * random.uniform(0.5, 1.0)
        budget = _BUDGET.get()
        loop = asyncio.get_running_loop()
        if budget is not None and delay >= budget.left(loop.time()):
            # the pause would outlast the call's time: stop now rather than at the deadline
            raise budget.expired(
                loop.time(),
                f"{transport}: {method} {redact_url(url)}",
                attempt=attempt + 1,
                attempts=cfg.max_retries + 1,
                waiting_for="backoff",
                detail=f"attempt {attempt + 1} of {cfg.max_retries + 1} failed ({why}) and the "
                f"{delay:.2f}s pause before the next would end past it",
            )
        logger.info(
            "fasttito: %s %s failed (%s); retry %d/%d in %.2fs",
            method,
            redact_url(url),
            why,
            attempt + 1,
            cfg.max_retries,
            delay,
        )
        t0 = loop.time()
        try:
            await asyncio.sleep(delay)
        finally:
            if budget is not None:
                budget.wait_left -= min(loop.time() - t0, delay)

    @staticmethod
    def _with_retries(text: str, attempt: int) -> str:
        return f"{text} (after {attempt} retries)" if attempt else text

    def _server_error(
        self, method: str, url: str, resp: HttpResponse, transport: str, attempt: int
    ) -> ServerError:
        text = self._redact(resp.body.decode("utf-8", errors="replace"))[:2000]
        if resp.truncated or len(text) == 2000:
            text += "..."
        status = resp.status
        if status in (401, 403):
            hint = "check the api_key / headers given to the Client"
        elif 400 <= status < 500:
            hint = "the server rejected the request (not retried)"
        else:
            hint = "server-side failure"
            if status in RETRY_STATUSES:
                hint += f", still failing after {attempt} retries"
        where = redact_url(url)
        route = route_hint(url, status, text)
        if route is not None:
            return UnsupportedRouteError(
                f"{transport}: {method} {where} answered HTTP {status}: {route}. The server "
                f"said: {text}",
                status_code=status,
                transport=transport,
                url=where,
                body=text,
            )
        return ServerError(
            f"{transport}: {method} {where} answered HTTP {status} ({hint}): {text}",
            status_code=status,
            transport=transport,
            url=where,
            body=text,
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text


SCALE_OUT_DISABLED = "scale-out endpoints are disabled"


class _ClientSession:
    """The :class:`~fasttito.transports._session.Session` a :class:`Client` hands its transports:
    the Client's settings, read live, and its POST with retries, budget and typed errors."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def config(self) -> ClientConfig:
        return self._client.config

    @property
    def model(self) -> str:
        return self._client.config.model

    @property
    def tokenizer(self) -> _core.Tokenizer | None:
        return self._client.tokenizer

    @property
    def stop_token_ids(self) -> list[int] | None:
        return self._client.stop_token_ids

    @property
    def verify(self) -> bool:
        return self._client.verify

    @property
    def chat_target(self) -> str:
        return self._client.chat_target

    async def post(
        self, url: str, body: bytes, transport: str, headers: Mapping[str, str] | None
    ) -> bytes:
        return await self._client._post(url, body, transport, extra_headers=headers)

    async def prompt_limit(self) -> int | None:
        return await self._client._prompt_limit()

    async def check_prompt_length(self, n: int, transport: str) -> None:
        await self._client._check_prompt_length(n, transport)


def route_hint(url: str, status: int, body: str) -> str | None:
    """What to do when ``url`` answered ``status`` because the server lacks the route or has it
    switched off; None for any other failure."""
    path = url.split("?", 1)[0].rstrip("/")
    if path.endswith("/inference/v1/generate"):
        if status == 403 and SCALE_OUT_DISABLED in body.lower():
            return (
                "vLLM serves /inference/v1/generate only when started with --enable-scale-out "
                "(vLLM >= 0.32 switches it off by default); restart `vllm serve` with "
                "--enable-scale-out, or use transport='chat' (messages every turn, no token-in)"
            )
        if status in (404, 405):
            return (
                "the server has no /inference/v1/generate route (it needs vLLM >= 0.20, started "
                "with --enable-scale-out from 0.32 on); use transport='auto' to pick what the "
                "server offers"
            )
    if path.endswith("/chat/completions/tokens") and status in (404, 405):
        return (
            "the server has no /v1/chat/completions/tokens route: that route is prime-rl's "
            "server's, not upstream vLLM's; against upstream vLLM use transport='vllm-generate' "
            "(start vLLM with --enable-scale-out and give the Client a tokenizer)"
        )
    if path.endswith("/generate") and status in (404, 405):
        return (
            "the server has no /generate route: that is SGLang's native route, at the server "
            "root (base_url with or without /v1); against vLLM use transport='vllm-generate', "
            "or transport='auto' to pick what the server offers"
        )
    return None


class ClientRollout:
    """One multi-turn conversation over a :class:`Client`. Its ids stay in Rust
    (:attr:`engine`, a :class:`fasttito.Rollout`); :attr:`turns` lists the turns so far."""

    __slots__ = ("_client", "_routing_key", "_state", "_transport")

    def __init__(self, client: Client, routing_key: str | None = None) -> None:
        self._client = client
        self._transport: Transport | None = None
        self._state: RolloutState | None = None
        if routing_key is not None and (not isinstance(routing_key, str) or not routing_key):
            raise ConfigError(f"routing_key must be a non-empty string, got {routing_key!r}")
        self._routing_key = routing_key if routing_key is not None else uuid.uuid4().hex

    @property
    def routing_key(self) -> str:
        """This conversation's routing key: sent in the Client's ``routing_key_header`` on
        every request of this conversation (and nowhere else)."""
        return self._routing_key

    @property
    def turns(self) -> list[Turn]:
        return list(self._state.turns) if self._state is not None else []

    @property
    def engine(self) -> Rollout | None:
        """The TITO engine of this conversation (None for the ``chat`` transport)."""
        return self._state.rollout if self._state is not None else None

    @property
    def transport(self) -> str:
        return self._transport.name if self._transport is not None else self._client.transport

    def __len__(self) -> int:
        return len(self._state.turns) if self._state is not None else 0

    async def generate(
        self,
        messages: Sequence[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = 256,
        temperature: float | None = 1.0,
        cache_salt: str | None = None,
        priority: int | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        top_logprobs: int | None = None,
        *,
        deadline: float | None = None,
        **sampling: Any,
    ) -> Turn:
        """Generate the next assistant turn of ``messages`` (the whole conversation so far,
        OpenAI format, dicts or Pydantic models). Extra keyword arguments are sampling
        parameters (``top_p``, ``seed``, ``stop``, ``extra_body``...), forwarded where the
        server takes them. Append ``turn.message()`` to ``messages`` for the next turn.

        ``top_logprobs=k`` (1 to 20) fills ``turn.completion_top_logprobs`` with the engine's
        ``k`` most likely tokens at every completion position, as ``(token_id, logprob)``
        pairs; ``dynamo-nvext`` and non-vLLM chat servers cannot return them by id and raise
        :class:`ConfigError`.

        The call ends within :attr:`Client.max_call_seconds` (plus its local work), shared by
        every request it makes. ``deadline`` (seconds) caps it shorter, retries and backoff
        included: when it passes, the call raises :class:`DeadlineExceededError` (a
        ``TimeoutError``) naming the attempt and what it was waiting for, and the rollout is
        unchanged (the turn can be tried again)."""
        client = self._client
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not deadline > 0
        ):
            raise ConfigError(
                f"deadline must be a positive number of seconds (or None), got {deadline!r}"
            )
        loop = asyncio.get_running_loop()
        token = _BUDGET.set(_CallBudget(loop.time(), client.max_call_seconds, deadline))
        try:
            return await self._generate(
                messages,
                tools,
                max_tokens,
                temperature,
                cache_salt,
                priority,
                chat_template_kwargs,
                top_logprobs,
                **sampling,
            )
        except BaseException as exc:  # a failed turn counts as an error, by type
            count_error(exc)
            raise
        finally:
            _BUDGET.reset(token)

    async def _generate(
        self,
        messages: Sequence[Any],
        tools: Sequence[Mapping[str, Any]] | None,
        max_tokens: int | None,
        temperature: float | None,
        cache_salt: str | None,
        priority: int | None,
        chat_template_kwargs: Mapping[str, Any] | None,
        top_logprobs: int | None,
        **sampling: Any,
    ) -> Turn:
        if self._transport is None:
            self._transport = await self._client._transport_for_turn()
            self._state = self._transport.new_state()
            self._state.headers = self._client.routing_headers(self._routing_key)
        assert self._state is not None
        limit = self._client.config.max_rollout_messages
        if self._state.rollout is None and len(messages) > limit:  # chat: no Rollout checks it
            raise RolloutLimitError(
                f"the conversation has {len(messages)} messages, over max_rollout_messages="
                f"{limit}; end the rollout, or raise max_rollout_messages on the Client",
                limit="max_rollout_messages",
                value=len(messages),
                maximum=limit,
            )
        if temperature is not None:
            sampling.setdefault("temperature", temperature)
        if top_logprobs is not None:
            if type(top_logprobs) is not int or not 1 <= top_logprobs <= MAX_TOP_LOGPROBS:
                raise ConfigError(
                    f"top_logprobs must be an integer from 1 to {MAX_TOP_LOGPROBS} (vLLM's "
                    f"default max_logprobs), got {top_logprobs!r}; leave it None for none"
                )
            self._transport.ask_top_logprobs(top_logprobs, sampling)
        args = GenerateArgs(
            messages=list(messages),
            tools=list(tools) if tools is not None else None,
            max_tokens=max_tokens,
            sampling=sampling,
            cache_salt=cache_salt,
            priority=priority,
            chat_template_kwargs=dict(chat_template_kwargs) if chat_template_kwargs else None,
            top_logprobs=top_logprobs,
        )
        turn = await self._transport.generate(self._state, args)
        self._state.turns.append(turn)
        return turn

    def trajectory(self) -> Sample:
        """The conversation as one training sample (:meth:`fasttito.Rollout.trajectory`)."""
        return self._engine_for_samples().trajectory()

    def trajectories(self) -> list[Sample]:
        """The conversation as training samples, a new one at every turn sent as messages
        (:meth:`fasttito.Rollout.trajectories`)."""
        return self._engine_for_samples().trajectories()

    def _engine_for_samples(self) -> Rollout:
        engine = self.engine
        if engine is None:
            raise TrajectoryError(
                "the chat transport keeps no token ids, so a rollout over it has no training "
                "sample; use a token transport (vllm-generate, vllm-chat-tokens, dynamo-nvext)"
            )
        return engine

    def __repr__(self) -> str:
        return f"ClientRollout(transport={self.transport!r}, turns={len(self)})"
