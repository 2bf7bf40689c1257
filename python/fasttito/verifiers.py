"""A drop-in ``OpenAIChatCompletionsTokenClient`` for verifiers 0.3.x, with fasttito's core.

verifiers environments select their TITO client by configuration
(``ClientConfig(client_type="openai_chat_completions_token")``) or take a client object; this
class has the same constructor, methods and results as verifiers 0.3.1's class of the same
name (``verifiers.legacy.clients.openai_chat_completions_token_client``), so it can replace it
without touching an environment::

    from fasttito.verifiers import OpenAIChatCompletionsTokenClient
    client = OpenAIChatCompletionsTokenClient(AsyncOpenAI(base_url=..., api_key=...))
    state = await env.rollout(row, client, "Qwen/Qwen3-8B", sampling_args)

What changes inside:

* **Prefix matching and bridges are Rust** (:class:`fasttito.TrajectoryRollouts`): each
  trajectory step of ``state["trajectory"]`` is hashed once, when first seen, so the cost of a
  turn does not grow with the number of turns (verifiers re-normalizes every step every turn).
  Normalization is symmetric: Pydantic ``vf.Message`` objects and plain dicts compare equal
  (``None`` keys dropped, ``content: ""`` equal to absent, flat ``vf.ToolCall`` equal to the
  OpenAI shape, ``arguments`` compared as JSON).
* **Token-in turns run on fasttito's transport classes** (:mod:`fasttito.transports`, the
  ones :class:`fasttito.Client` runs): the request is written and the response parsed, checked
  and decoded in Rust, and posted through the caller's own ``AsyncOpenAI`` HTTP client (its
  httpx client, base URL, api key and headers), so auth and proxies behave as configured. The
  turn is not recorded by fasttito: verifiers keeps it in ``state["trajectory"]``.
* **The transport is chosen by** ``renderer_transport``: ``prime_vllm_generate`` (default; also
  ``vllm``) posts ``/v1/chat/completions/tokens`` to vLLM + prime-rl; ``dynamo_chat_nvext``
  (also ``dynamo``, ``dynamo_chat``) posts ``/v1/chat/completions`` with ``nvext.token_data``
  to NVIDIA Dynamo, tokenizing locally from the ``renderer_model_name`` (or model) folder;
  ``vllm_generate`` (also ``vllm-generate``) posts ``/inference/v1/generate`` with token ids to
  upstream vLLM (>= 0.20; 0.32 and later started with ``--enable-scale-out``), which has no
  ``/v1/chat/completions/tokens`` route, also tokenizing locally.

Turn 1, multimodal conversations and turns without a usable prefix go as messages (MITO)
exactly as in verifiers (through the parent class on vLLM); every such fallback past turn 1 is
counted in :func:`fasttito.metrics` with its reason and logged.

This module imports verifiers; ``import fasttito`` never does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fasttito import _core
from fasttito.client import Client as _HttpClient
from fasttito.config import ClientConfig, resolve_transport
from fasttito.errors import ConfigError, ResponseParseError, ServerError, UnsupportedRouteError
from fasttito.http import HttpxPoster
from fasttito.rollout import Rollout
from fasttito.tokens import TokenIds
from fasttito.trajectory import TrajectoryRollouts
from fasttito.transports import TRANSPORT_CLASSES
from fasttito.transports._base import GenerateArgs, RolloutState, Transport, check_prompt_ids

try:
    import openai
    from verifiers.legacy.clients.openai_chat_completions_client import (
        OpenAIChatCompletionsClient,
        handle_openai_overlong_prompt,
    )
    from verifiers.legacy.clients.openai_chat_completions_token_client import (
        TokenizeResponse,
    )
    from verifiers.legacy.errors import EmptyModelResponseError
    from verifiers.legacy.errors import OverlongPromptError as VfOverlongPromptError
    from verifiers.legacy.types import ClientConfig as VfClientConfig
    from verifiers.legacy.types import (
        Response,
        ResponseMessage,
        ResponseTokens,
        ToolCall,
        Usage,
    )
    from verifiers.legacy.utils.client_utils import (
        post_chat_completion_with_routed_experts_sidecar,
    )
except ImportError as exc:  # pragma: no cover - exercised by the packaging test
    raise ImportError(
        "fasttito.verifiers needs verifiers 0.3.x (its verifiers.legacy client API): "
        "pip install 'fasttito[verifiers]'"
    ) from exc

__all__ = [
    "DEFAULT_RENDERER_TRANSPORT",
    "RENDERER_TRANSPORTS",
    "RENDERER_TRANSPORT_ENV",
    "OpenAIChatCompletionsTokenClient",
    "TokenChatResponse",
    "resolve_renderer_transport",
]

logger = logging.getLogger("fasttito")

#: Token ids as this module passes them: Rust's zero-copy ``TokenIds`` or a caller's list.
Ids = TokenIds | Sequence[int]

#: ``renderer_transport`` values and the fasttito transport each selects (docs/wire.md
#: "Transport-name history": vf #1289's names, the later ``vllm``/``dynamo``, and the ids).
RENDERER_TRANSPORTS: Mapping[str, str] = {
    "prime_vllm_generate": "vllm-chat-tokens",
    "vllm": "vllm-chat-tokens",
    "vllm-chat-tokens": "vllm-chat-tokens",
    "dynamo_chat_nvext": "dynamo-nvext",
    "dynamo": "dynamo-nvext",
    "dynamo_chat": "dynamo-nvext",
    "dynamo-nvext": "dynamo-nvext",
    "vllm_generate": "vllm-generate",
    "vllm-generate": "vllm-generate",
}
DEFAULT_RENDERER_TRANSPORT = "prime_vllm_generate"
#: The environment variable read when neither the config nor the constructor names a transport.
RENDERER_TRANSPORT_ENV = "FASTTITO_RENDERER_TRANSPORT"

# Phrases of a server's "prompt too long" 400 (verifiers' handle_openai_overlong_prompt list).
_CONTEXT_PHRASES = (
    "this model's maximum context length is",
    "is longer than the model's context length",
    "is longer than the maximum model length",
    "exceeds the model's context length",
    "exceed the configured limit",
    "exceeds the configured limit",
    "exceeded model",
    "prompt_too_long",
    "context length",
    "maximum model length",
)
# openai's own headers, which the fasttito HTTP client sets itself or does not need.
_SKIP_HEADERS = ("authorization", "accept", "content-type", "user-agent")


def resolve_renderer_transport(
    config: Any = None, renderer_transport: str | None = None
) -> tuple[str, str]:
    """``(value, transport id)`` from, in order: the config's ``renderer_transport`` (a field
    or an extra attribute of a ``ClientConfig``), the ``renderer_transport`` argument, the
    ``FASTTITO_RENDERER_TRANSPORT`` environment variable, the default
    ``prime_vllm_generate``. An unknown value raises :class:`ConfigError` naming the accepted
    ones.

    >>> resolve_renderer_transport(None, "dynamo")
    ('dynamo', 'dynamo-nvext')
    """
    value: Any = None
    source = ""
    if config is not None:
        value = getattr(config, "renderer_transport", None)
        if value is None:
            extra = getattr(config, "model_extra", None)
            if isinstance(extra, Mapping):
                value = extra.get("renderer_transport")
        source = "ClientConfig.renderer_transport"
    if value is None and renderer_transport is not None:
        value, source = renderer_transport, "renderer_transport="
    if value is None and os.environ.get(RENDERER_TRANSPORT_ENV):
        value, source = os.environ[RENDERER_TRANSPORT_ENV], RENDERER_TRANSPORT_ENV
    if value is None:
        value, source = DEFAULT_RENDERER_TRANSPORT, "default"
    if not isinstance(value, str) or value not in RENDERER_TRANSPORTS:
        raise ConfigError(
            f"unknown renderer_transport {value!r} (from {source}); accepted: "
            f"{', '.join(RENDERER_TRANSPORTS)} (default {DEFAULT_RENDERER_TRANSPORT})"
        )
    return value, resolve_transport(RENDERER_TRANSPORTS[value])


@dataclass(frozen=True, slots=True, eq=False)
class TokenChatResponse:
    """The native response of a turn fasttito sent itself (vLLM token route, or any Dynamo /
    vLLM generate turn): the turn's data as the transport completed it (parsed, checked and, on
    the routes that return ids only, decoded in Rust) and what the client adds to it.
    :meth:`from_native_response <OpenAIChatCompletionsTokenClient.from_native_response>` turns
    it into a ``vf.Response``; ``created`` is when fasttito received the answer (the parser
    does not read the server's timestamp)."""

    turn: _core.TurnData
    model: str
    transport: str
    mode: str
    #: the ids fasttito sent (None when the turn went as messages)
    sent_prompt_ids: TokenIds | None
    content: str | None
    reasoning_content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str | None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def parsed(self) -> _core.TurnData:
        """Deprecated alias of :attr:`turn` (the parsed response became the turn's data: the
        same fields, the prompt ids the sent ones when the server reports none, no ``body``)."""
        warnings.warn(
            "TokenChatResponse.parsed is deprecated: use TokenChatResponse.turn",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.turn


@dataclass(frozen=True, slots=True)
class _VfSession:
    """The :class:`~fasttito.transports._session.Session` the verifiers client hands the
    transport classes: the fasttito HTTP client over the caller's ``AsyncOpenAI`` (URLs and
    limits), the request's model, the tokenizer of the turn, and verifiers' POST (:meth:`_send
    <OpenAIChatCompletionsTokenClient._send>`, with its error mapping). There is no length
    pre-flight: verifiers maps the server's own 400 to ``vf.OverlongPromptError``."""

    owner: OpenAIChatCompletionsTokenClient
    http: _HttpClient
    model: str
    tokenizer: _core.Tokenizer | None
    chat_target: str
    verify: bool = False

    @property
    def config(self) -> ClientConfig:
        return self.http.config

    @property
    def stop_token_ids(self) -> list[int] | None:
        return self.tokenizer.stop_token_ids if self.tokenizer is not None else None

    async def post(
        self, url: str, body: bytes, transport: str, headers: Mapping[str, str] | None
    ) -> bytes:
        return await self.owner._send(self.http, url, body, headers)

    async def prompt_limit(self) -> int | None:
        return None

    async def check_prompt_length(self, n: int, transport: str) -> None:
        return None


def _seconds(timeout: Any) -> float:
    """An openai/httpx timeout as the seconds of one attempt."""
    if isinstance(timeout, (int, float)) and timeout > 0:
        return float(timeout)
    parts = [getattr(timeout, k, None) for k in ("read", "write", "connect", "pool")]
    numbers = [float(p) for p in parts if isinstance(p, (int, float)) and p > 0]
    return max(numbers) if numbers else 600.0


def _httpx_root(cls: type) -> str | None:
    """``"httpx"`` or ``"httpx2"`` when ``cls`` is (a subclass of) that package's
    ``AsyncClient`` (openai 3.x wraps httpx2; verifiers' ClientConfig hands it an httpx one)."""
    for c in cls.__mro__:
        root = c.__module__.split(".", 1)[0]
        if c.__name__ == "AsyncClient" and root in ("httpx", "httpx2"):
            return root
    return None


def _openai_httpx() -> Any:
    import importlib

    return importlib.import_module(_httpx_root(openai.DefaultAsyncHttpxClient) or "httpx")


_OPENAI_HTTPX = _openai_httpx()


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class OpenAIChatCompletionsTokenClient(OpenAIChatCompletionsClient):  # type: ignore[misc]
    """verifiers' TITO client with fasttito's Rust core (see the module docstring).

    Args:
        client_or_config: an ``AsyncOpenAI`` client (or any object with its ``post``), or a
            verifiers ``ClientConfig`` (the client is built from it as verifiers does).
        renderer_transport: used when the config has no ``renderer_transport``; else the
            ``FASTTITO_RENDERER_TRANSPORT`` environment variable, else ``prime_vllm_generate``.
        renderer_model_name: the local model folder the Dynamo transport tokenizes with
            (default: the config's ``renderer_model_name``, else the model of each request).
        tokenizer: a :class:`fasttito.Tokenizer` or model folder for the bridges. With the vLLM
            transport it replaces the two ``/tokenize`` calls per turn with a local render (the
            template must be the server's); with Dynamo it overrides ``renderer_model_name``.
        max_rollouts: how many concurrent trajectories to keep TITO state for.
    """

    def __init__(
        self,
        client_or_config: Any,
        *,
        renderer_transport: str | None = None,
        renderer_model_name: str | os.PathLike[str] | None = None,
        tokenizer: _core.Tokenizer | str | os.PathLike[str] | None = None,
        max_rollouts: int = 4096,
    ) -> None:
        config = client_or_config if isinstance(client_or_config, VfClientConfig) else None
        # resolve first: a bad name fails before any client is built
        self.renderer_transport, self.transport = resolve_renderer_transport(
            config, renderer_transport
        )
        super().__init__(client_or_config)
        if renderer_model_name is None and config is not None:
            renderer_model_name = getattr(config, "renderer_model_name", None)
        self.renderer_model_name = (
            os.fspath(renderer_model_name) if renderer_model_name is not None else None
        )
        if tokenizer is not None and not isinstance(tokenizer, _core.Tokenizer):
            tokenizer = _core.Tokenizer.from_dir(tokenizer)
        self._tokenizer: _core.Tokenizer | None = tokenizer
        self._max_rollouts = max_rollouts
        self._tokenizers: dict[str, _core.Tokenizer] = {}
        self._tokenizer_lock: asyncio.Lock | None = None
        self._by_tokenizer: dict[int, TrajectoryRollouts] = {}
        self._http: _HttpClient | None = None

    # -- verifiers API ---------------------------------------------------------------------
    @handle_openai_overlong_prompt  # type: ignore[untyped-decorator]
    async def get_native_response(
        self,
        prompt: Any,
        model: str,
        sampling_args: Mapping[str, Any],
        tools: list[Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """One turn. Returns a :class:`TokenChatResponse` for the turns fasttito sends, or the
        parent class's ``ChatCompletion`` for the messages turns it hands to verifiers."""
        state = kwargs.pop("state")
        extra_headers = kwargs.pop("extra_headers", None)
        trajectory = state["trajectory"]
        extra_body = sampling_args.get("extra_body") or {}
        chat_template_kwargs = extra_body.get("chat_template_kwargs") or {}
        if self.transport in _LOCAL_TRANSPORTS:
            return await self._local_turn(
                prompt, model, sampling_args, tools, state, chat_template_kwargs, extra_headers
            )
        if len(trajectory) == 0:
            return await self._mito(prompt, model, sampling_args, tools, extra_headers)
        prompt_ids, reason, plan, rollout = await self._prompt_ids(
            state, prompt, tools, chat_template_kwargs
        )
        if prompt_ids is None:
            if reason != "multimodal":  # verifiers sends multimodal rollouts as messages, silently
                self.logger.warning(
                    f"TITO fell back to MITO on turn {len(trajectory) + 1}"
                    + (f" ({reason})" if reason else "")
                )
            response = await self._mito(prompt, model, sampling_args, tools, extra_headers)
        else:
            response = await self._post_tokens(
                prompt,
                model,
                sampling_args,
                tools,
                chat_template_kwargs,
                state,
                prompt_ids,
                plan,
                rollout,
                extra_headers,
            )
        if plan is not None:  # the turn completed: it counts in fasttito.metrics()
            plan.count()
        return response

    async def get_prompt_ids(
        self,
        state: Any,
        prompt_messages: Any,
        oai_tools: list[Any] | None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> TokenIds | list[int] | None:
        """The stitched prompt ids of the next turn (the matched step's engine ids verbatim,
        plus the bridge), or ``None`` when the turn must go as messages. The ids are a
        :class:`fasttito.TokenIds` (a read-only sequence, equal to the list; ``.tolist()``)."""
        _, plan = await self._plan(state, prompt_messages, oai_tools, chat_template_kwargs)
        return plan.prompt_ids if plan.mode == "tito" else None

    async def tokenize(
        self,
        messages: str | Sequence[Any],
        tools: list[Any] | None,
        model: str,
        extra_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[int]:
        """Tokenize text or messages: locally when this client has a tokenizer (always with
        Dynamo, which has no ``/tokenize``), else with the server's ``POST /tokenize``."""
        extra = dict(extra_kwargs or {})
        tok = self._tokenizer
        if tok is None and self.transport in _LOCAL_TRANSPORTS:
            tok = await self._load_tokenizer(model)
        if tok is not None:
            if isinstance(messages, str):
                return tok.encode(messages, add_special_tokens=False)
            ctk = dict(extra.pop("chat_template_kwargs", None) or {})
            add_generation_prompt = bool(extra.pop("add_generation_prompt", True))
            gen = add_generation_prompt
            return list(
                tok.apply_chat_template(
                    messages, tools=tools, add_generation_prompt=gen, **ctk, **extra
                )
            )
        if isinstance(messages, str):
            body: dict[str, Any] = dict(model=model, prompt=messages, **extra)
        else:
            body = dict(model=model, messages=list(messages), tools=tools, **extra)
        http = self._fast_http()
        if http is None:  # not an AsyncOpenAI: through its post(), as verifiers does
            answer = await self.token_client.post("/tokenize", body=body, cast_to=TokenizeResponse)
            return [int(t) for t in answer.tokens]
        # an AsyncOpenAI: one POST through its httpx client, without openai's per-call client
        # copy (with_options) and model validation, which cost more than the bridge itself
        raw = await http._post(
            http.config.root_url + "/tokenize",
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            self.transport,
        )
        try:
            tokens = json.loads(raw)["tokens"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ResponseParseError(
                f"{self.transport}: /tokenize answered without a token list: {raw[:200]!r}"
            ) from exc
        if not isinstance(tokens, list) or not all(type(t) is int and t >= 0 for t in tokens):
            raise ResponseParseError(f"{self.transport}: /tokenize answered non-id tokens")
        return tokens

    @property
    def token_client(self) -> Any:
        """The OpenAI client at the server root (``/tokenize`` is not under ``/v1``)."""
        base_url = str(self.client.base_url).rstrip("/")
        if base_url.endswith("/v1"):
            base_url = base_url[:-3]
        return self.client.with_options(base_url=base_url)

    async def raise_from_native_response(self, response: Any) -> None:
        if not isinstance(response, TokenChatResponse):
            await super().raise_from_native_response(response)
            return
        if not (response.content or response.tool_calls or response.reasoning_content):
            raise EmptyModelResponseError("Model returned no content and did not call any tools")

    async def from_native_response(self, response: Any) -> Any:
        if not isinstance(response, TokenChatResponse):
            return await super().from_native_response(response)
        return _to_vf_response(response)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()  # the caller's httpx client stays open
        await super().close()

    # -- planning --------------------------------------------------------------------------
    async def _prompt_ids(
        self, state: Any, prompt: Any, tools: Any, chat_template_kwargs: Mapping[str, Any]
    ) -> tuple[Ids | None, str | None, _core.Plan | None, Rollout | None]:
        """``get_prompt_ids`` (honouring a subclass's or a test's replacement), the reason
        when it gives None, and fasttito's plan and the rollout it came from (None for a
        replacement)."""
        method = self.get_prompt_ids
        if getattr(method, "__func__", None) is _OWN_GET_PROMPT_IDS:
            rollout, plan = await self._plan(state, prompt, tools, chat_template_kwargs)
            if plan.mode != "tito":
                return None, plan.fallback_reason, plan, rollout
            return plan.prompt_ids, None, plan, rollout
        ctk = dict(chat_template_kwargs) if chat_template_kwargs else None
        ids = await method(state, prompt, tools, chat_template_kwargs=ctk)
        return ids, None if ids is not None else "get_prompt_ids returned None", None, None

    def _local_bridges(self) -> bool:
        tokenize = getattr(self.tokenize, "__func__", None)
        return tokenize is _OWN_TOKENIZE and (
            self._tokenizer is not None or self.transport in _LOCAL_TRANSPORTS
        )

    def _rollouts(self, tok: _core.Tokenizer | None) -> TrajectoryRollouts:
        key = id(tok)
        rollouts = self._by_tokenizer.get(key)
        if rollouts is None:
            rollouts = TrajectoryRollouts(tok, max_rollouts=self._max_rollouts)
            self._by_tokenizer[key] = rollouts
        return rollouts

    async def _plan(
        self,
        state: Any,
        prompt: Any,
        tools: Any,
        chat_template_kwargs: Mapping[str, Any] | None,
        *,
        render_mito: bool = False,
    ) -> tuple[Rollout, _core.Plan]:
        """The plan of the next turn of ``state``'s trajectory, and its rollout: bridges
        rendered locally, or tokenized by :meth:`tokenize` (a replacement is honoured)."""
        ctk = dict(chat_template_kwargs) if chat_template_kwargs else None
        tools = tools or None
        if self._local_bridges():
            tok = self._tokenizer or await self._load_tokenizer(state["model"])
            rollout = self._rollouts(tok).rollout_for(state["trajectory"], tools, ctk)
            return rollout, rollout.prepare(prompt, tools, ctk, render_mito=render_mito)
        rollout = self._rollouts(None).rollout_for(state["trajectory"], tools, ctk)
        begun = rollout.begin(prompt, tools, ctk)
        if isinstance(begun, _core.Plan):
            return rollout, begun
        forwarded = {"chat_template_kwargs": dict(ctk)} if ctk else {}
        full: list[int] | None
        base: list[int] | None
        try:
            full = await self.tokenize(
                messages=begun.full_messages,
                tools=tools,
                model=state["model"],
                extra_kwargs=dict(forwarded),
            )
            base = await self.tokenize(
                messages=begun.base_messages,
                tools=tools,
                model=state["model"],
                extra_kwargs=dict(add_generation_prompt=False, **forwarded),
            )
        except Exception as exc:  # counted as tokenization_failed; the turn goes as messages
            self.logger.debug(f"TITO: bridge tokenization failed ({type(exc).__name__}: {exc})")
            full = base = None
        return rollout, rollout.finish(begun, full, base)

    async def _load_tokenizer(self, model: str) -> _core.Tokenizer:
        """The local tokenizer of ``renderer_model_name`` (or ``model``), loaded once, in a
        worker thread (vf #1574: loading must not block the event loop)."""
        name = self.renderer_model_name or model
        tok = self._tokenizers.get(name)
        if tok is not None:
            return tok
        if self._tokenizer_lock is None:
            self._tokenizer_lock = asyncio.Lock()
        async with self._tokenizer_lock:
            tok = self._tokenizers.get(name)
            if tok is None:
                if not (Path(name) / "tokenizer.json").is_file():
                    raise ConfigError(
                        f"renderer_transport {self.renderer_transport!r} tokenizes locally, "
                        f"but {name!r} is not a local model folder with a tokenizer.json; set "
                        "renderer_model_name (ClientConfig or constructor) to the served model's "
                        "folder (tokenizer.json + tokenizer_config.json / chat_template.jinja)"
                    )
                tok = await asyncio.to_thread(_core.Tokenizer.from_dir, name)
                self._tokenizers[name] = tok
        return tok

    # -- sending ---------------------------------------------------------------------------
    def _fast_http(self) -> _HttpClient | None:
        """fasttito's HTTP policy (retries, typed errors) over the caller's ``AsyncOpenAI``
        httpx client; None when the client is not an ``AsyncOpenAI`` (then requests go through
        its ``post`` as in verifiers)."""
        if self._http is not None:
            return self._http
        oc = self.client
        inner = getattr(oc, "_client", None)
        if not isinstance(oc, openai.AsyncOpenAI) or _httpx_root(type(inner)) is None:
            return None
        headers = {
            k: v
            for k, v in oc.default_headers.items()
            if isinstance(v, str)
            and k.lower() not in _SKIP_HEADERS
            and not k.lower().startswith("x-stainless")
        }
        self._http = _HttpClient(
            base_url=str(oc.base_url),
            model="verifiers",
            transport="chat",
            api_key=oc.api_key or None,
            headers=headers,
            timeout=_seconds(oc.timeout),
            max_retries=int(oc.max_retries),
            http_client=HttpxPoster(inner),
            check_prompt_length=False,
        )
        return self._http

    async def _mito(
        self,
        prompt: Any,
        model: str,
        sampling_args: Mapping[str, Any],
        tools: Any,
        extra_headers: Mapping[str, str] | None,
    ) -> Any:
        """A messages turn, exactly as verifiers sends it (the parent class's request, with the
        token client's ``logprobs`` and ``return_token_ids``)."""
        return await super().get_native_response(
            prompt, model, _normalized(sampling_args), tools, extra_headers=extra_headers
        )

    def _transport_for(
        self,
        http: _HttpClient,
        model: str,
        tok: _core.Tokenizer | None,
        prompt: Any,
        tools: Any,
        sampling_args: Mapping[str, Any],
        chat_template_kwargs: Mapping[str, Any] | None,
    ) -> tuple[Transport, GenerateArgs]:
        """The transport class of this client's transport over a :class:`_VfSession`, and the
        turn's arguments as it takes them (verifiers' sampling arguments as they are: the body
        writers normalize them as verifiers does)."""
        target = "dynamo" if self.transport == "dynamo-nvext" else "vllm"
        session = _VfSession(self, http, model, tok, target)
        transport = TRANSPORT_CLASSES[self.transport](session)
        args = GenerateArgs(
            messages=prompt,
            tools=tools or None,
            max_tokens=None,
            sampling=sampling_args if isinstance(sampling_args, dict) else dict(sampling_args),
            cache_salt=None,
            priority=None,
            chat_template_kwargs=dict(chat_template_kwargs) if chat_template_kwargs else None,
        )
        return transport, args

    async def _token_turn(
        self, transport: Transport, state: RolloutState, plan: _core.Plan, model: str
    ) -> TokenChatResponse:
        """Send the planned turn and complete it on ``transport``, recording nothing (verifiers
        keeps the turn in its trajectory; the caller counts it with ``plan.count()``)."""
        raw = await transport.send(state, plan)
        turn = transport.complete(state, plan, raw, record=False)
        return TokenChatResponse(
            turn=turn,
            model=model,
            transport=self.transport,
            mode=turn.mode,
            sent_prompt_ids=plan.prompt_ids if plan.sends_ids else None,
            content=turn.content,
            reasoning_content=turn.reasoning_content,
            tool_calls=list(turn.tool_calls),
            finish_reason=turn.finish_reason,
        )

    async def _post_tokens(
        self,
        prompt: Any,
        model: str,
        sampling_args: Mapping[str, Any],
        tools: Any,
        chat_template_kwargs: Mapping[str, Any],
        state: Any,
        prompt_ids: Ids,
        plan: _core.Plan | None,
        rollout: Rollout | None,
        extra_headers: Mapping[str, str] | None,
    ) -> Any:
        """A TITO turn on vLLM's token route: ``plan``'s ids (from ``rollout``), or a
        replacement ``get_prompt_ids``' ids when ``plan`` is None."""
        tok = self._tokenizer
        if plan is None and tok is not None:  # a caller's get_prompt_ids may return any ids
            check_prompt_ids(prompt_ids, tok.vocab_size, self.transport)
        http = self._fast_http()
        if http is None:
            # not an AsyncOpenAI: verifiers' own request through the client's post()
            args = _normalized(sampling_args)
            extra_body = args.pop("extra_body", {})
            ids = prompt_ids.tolist() if isinstance(prompt_ids, TokenIds) else list(prompt_ids)
            body = {
                "model": model,
                "messages": prompt,
                "tools": tools,
                "tokens": ids,
                **args,
                **extra_body,
            }
            return await post_chat_completion_with_routed_experts_sidecar(
                self.client, "/chat/completions/tokens", body=body, extra_headers=extra_headers
            )
        transport, gen = self._transport_for(
            http, model, tok, prompt, tools, sampling_args, chat_template_kwargs
        )
        turn_state = RolloutState(rollout, headers=_headers(extra_headers))
        if plan is None or rollout is None:
            turn = len(state["trajectory"]) + 1
            plan = transport.plan_ids(prompt_ids, gen, turn=turn, tito=True)
        else:
            plan = transport.plan_body(turn_state, plan, gen)
        return await self._token_turn(transport, turn_state, plan, model)

    async def _local_turn(
        self,
        prompt: Any,
        model: str,
        sampling_args: Mapping[str, Any],
        tools: Any,
        state: Any,
        chat_template_kwargs: Mapping[str, Any],
        extra_headers: Mapping[str, str] | None,
    ) -> Any:
        """A turn of a transport that renders locally (Dynamo, vLLM's generate route): every
        turn is token-in, with the stitched ids on TITO turns and the full local render on turn
        1 and fallbacks; the message is decoded locally from the ids (neither route parses tool
        calls from token-in requests)."""
        http = self._fast_http()
        if http is None:
            raise ConfigError(
                f"renderer_transport {self.renderer_transport} needs an openai.AsyncOpenAI "
                f"client (or a verifiers ClientConfig); got {type(self.client).__name__}"
            )
        tok = self._tokenizer or await self._load_tokenizer(model)
        ctk = dict(chat_template_kwargs) if chat_template_kwargs else None
        transport, args = self._transport_for(
            http, model, tok, prompt, tools, sampling_args, chat_template_kwargs
        )
        method = self.get_prompt_ids
        if getattr(method, "__func__", None) is not _OWN_GET_PROMPT_IDS:
            ids: Ids | None = await method(state, prompt, tools, chat_template_kwargs=ctk)
            tito = ids is not None
            if ids is None:
                ids = tok.apply_chat_template(
                    prompt, tools=tools or None, add_generation_prompt=True, **(ctk or {})
                )
            else:
                check_prompt_ids(ids, tok.vocab_size, self.transport)
            turn = len(state["trajectory"]) + 1
            plan = transport.plan_ids(ids, args, turn=turn, tito=tito)
            turn_state = RolloutState(None, headers=_headers(extra_headers))
            return await self._token_turn(transport, turn_state, plan, model)
        rollout, plan = await self._plan(state, prompt, tools, ctk, render_mito=True)
        turn_state = RolloutState(rollout, headers=_headers(extra_headers))
        multimodal = plan.fallback_reason == "multimodal"
        if plan.mode != "tito" and plan.turn > 1 and not multimodal:
            self.logger.warning(
                f"TITO fell back to MITO on turn {plan.turn} ({plan.fallback_reason})"
            )
        if multimodal or plan.prompt_ids is None:
            # images and audio need the server's processor, and a failed local render goes to
            # the server's template: Dynamo gets the messages, vLLM's chat route (verifiers) too
            if self.transport != "dynamo-nvext":
                response = await self._mito(prompt, model, sampling_args, tools, extra_headers)
                plan.count()
                return response
            plan = transport.plan_body(turn_state, plan, args, mito_messages=True)
        else:
            plan = transport.plan_body(turn_state, plan, args)
        response = await self._token_turn(transport, turn_state, plan, model)
        plan.count()  # the turn completed: it counts in fasttito.metrics()
        return response

    async def _send(
        self,
        http: _HttpClient,
        url: str,
        body: bytes,
        extra_headers: Mapping[str, str] | None,
    ) -> bytes:
        """POST through fasttito's HTTP policy; the server answers verifiers maps to its own
        errors (auth -> openai's, prompt too long -> ``vf.OverlongPromptError``) are mapped."""
        try:
            return await http._post(url, body, self.transport, extra_headers=extra_headers)
        except ServerError as exc:
            status = exc.status_code
            if status in (401, 403) and not isinstance(exc, UnsupportedRouteError):
                cls = openai.AuthenticationError if status == 401 else openai.PermissionDeniedError
                mod = _OPENAI_HTTPX  # openai 1.x-2.x: httpx; 3.x: httpx2
                response = mod.Response(status, request=mod.Request("POST", exc.url))
                raise cls(str(exc), response=response, body=None) from exc
            if status in (400, 413) and any(p in exc.body.lower() for p in _CONTEXT_PHRASES):
                raise VfOverlongPromptError(str(exc)) from exc
            raise


# The transports whose every turn is rendered locally and sent as token ids.
_LOCAL_TRANSPORTS = frozenset({"dynamo-nvext", "vllm-generate"})

# The class's own methods, kept before anyone can replace them (a subclass's override or a
# test's monkeypatch of the class attribute is then recognized and honoured).
_OWN_GET_PROMPT_IDS = OpenAIChatCompletionsTokenClient.get_prompt_ids
_OWN_TOKENIZE = OpenAIChatCompletionsTokenClient.tokenize


def _normalized(sampling_args: Mapping[str, Any]) -> dict[str, Any]:
    """verifiers' token-client ``normalize_sampling_args``: ``max_tokens`` ->
    ``max_completion_tokens``, ``logprobs`` on, ``return_token_ids`` in ``extra_body``, ``None``
    values dropped."""
    args = dict(sampling_args)
    if "max_tokens" in args:
        args["max_completion_tokens"] = args.pop("max_tokens")
    args["logprobs"] = True
    args["extra_body"] = {**(args.get("extra_body") or {}), "return_token_ids": True}
    return {k: v for k, v in args.items() if v is not None}


def _headers(extra_headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """verifiers' ``extra_headers`` as a transport's conversation headers."""
    if not extra_headers:
        return None
    return extra_headers if isinstance(extra_headers, dict) else dict(extra_headers)


def _finish_reason(value: str | None) -> str | None:
    return value if value in ("stop", "length", "tool_calls") else None


def _to_vf_response(native: TokenChatResponse) -> Any:
    """The ``vf.Response`` of a fasttito-sent turn, with the fields verifiers' parser fills."""
    turn = native.turn
    usage_raw = turn.usage
    usage = None
    if usage_raw is not None:
        prompt_tokens = usage_raw.get("prompt_tokens")
        completion_tokens = usage_raw.get("completion_tokens")
        if isinstance(prompt_tokens, int) and isinstance(completion_tokens, int):
            total = usage_raw.get("total_tokens")
            usage = Usage(
                prompt_tokens=prompt_tokens,
                reasoning_tokens=0,
                completion_tokens=completion_tokens,
                total_tokens=total if isinstance(total, int) else prompt_tokens + completion_tokens,
            )
    tool_calls = [
        ToolCall(
            id=str(call.get("id") or ""),
            name=str(call["function"]["name"]),
            arguments=_arguments(call["function"].get("arguments")),
        )
        for call in native.tool_calls
    ]
    content = native.content or None
    reasoning = native.reasoning_content or None
    tokens = None
    prompt_ids = turn.prompt_ids  # the server's, else those sent
    logprobs = turn.completion_logprobs
    if prompt_ids is not None and logprobs is not None:
        completion_ids = turn.completion_ids
        if len(logprobs) != len(completion_ids):  # the parser's invariant, kept visible
            raise ResponseParseError(
                f"{native.transport}: {len(logprobs)} logprobs for {len(completion_ids)} ids"
            )
        p, c = prompt_ids.tolist(), completion_ids.tolist()
        tokens = ResponseTokens.model_construct(
            prompt_ids=p,
            prompt_mask=[0] * len(p),
            completion_ids=c,
            completion_mask=[1] * len(c),
            completion_logprobs=logprobs,
            routed_experts=_routed_experts(turn.routed_experts),
            multi_modal_data=None,
            prompt_attribution=None,
        )
    finish = _finish_reason(native.finish_reason)
    return Response(
        id=turn.response_id or "",
        created=native.created,
        model=native.model,
        usage=usage,
        message=ResponseMessage(
            content=content,
            reasoning_content=reasoning,
            finish_reason=finish,
            is_truncated=finish == "length",
            tokens=tokens,
            tool_calls=tool_calls or None,
        ),
    )


def _routed_experts(raw: bytes | None) -> Any:
    """The ``routed_experts`` sidecar as verifiers keeps it: the object, with ``data`` as a
    memoryview of its (base64/base85) text."""
    if raw is None:
        return None
    value = json.loads(raw)
    if isinstance(value, dict) and isinstance(value.get("data"), str):
        value["data"] = memoryview(value["data"].encode("ascii"))
    elif isinstance(value, str):  # upstream vLLM >= 0.32: the base64 .npy text itself
        return memoryview(value.encode("ascii"))
    return value
