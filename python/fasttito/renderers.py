"""fasttito for the ``renderers`` package (0.1.12): a renderer for any model folder, ``generate``.

verifiers 0.4 (``verifiers.v1.clients.train.TrainClient``) and prime-rl render with ``renderers``
and call ``renderers.client.generate``. renderers loads renderers that live outside its package by
import path, so switching to fasttito is configuration::

    from renderers import create_renderer
    from renderers.configs import CustomRendererConfig

    renderer = create_renderer(
        tokenizer, CustomRendererConfig(import_path="fasttito.renderers.Renderer")
    )

or, in a TOML config, ``[renderer]`` with ``name = "custom"`` and
``import_path = "fasttito.renderers.Renderer"``. The model folder is the ``model_dir`` field, or
the tokenizer's ``name_or_path``. Other fields are chat-template variables
(``enable_thinking = false``), as for renderers' ``DefaultRenderer``.

This module imports ``renderers`` (the ``renderers`` extra); ``import fasttito`` does not import
this module. See ``docs/renderers.md``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

try:
    import renderers.client as _rclient
    from renderers.base import (
        ParsedResponse,
        ParsedToolCall,
        RenderedTokens,
        ToolCallParseStatus,
    )
    from renderers.base import extract_message_tool_names as _message_tool_names
    from renderers.configs import BaseRendererConfig
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "fasttito.renderers needs the renderers package: pip install 'fasttito[renderers]' "
        "(renderers==0.1.12)"
    ) from exc

from pydantic import ConfigDict

from fasttito import _core
from fasttito.errors import ConfigError, FasttitoError, ResponseParseError

__all__ = [
    "MalformedGenerateResponseError",
    "OverlongPromptError",
    "Renderer",
    "RendererConfig",
    "generate",
]

# renderers' "no sampling evidence" value (renderers.client.VLLM_LOGPROB_SENTINEL).
_SENTINEL = -9999.0
_ROUTED_DATA = re.compile(rb'"data"\s*:\s*"')


class MalformedGenerateResponseError(
    _rclient.MalformedGenerateResponseError,  # type: ignore[misc]
    FasttitoError,
):
    """The generate endpoint returned unusable sampled-token evidence (renderers'
    ``MalformedGenerateResponseError``, and a :class:`fasttito.FasttitoError`)."""


class OverlongPromptError(_rclient.OverlongPromptError, FasttitoError):  # type: ignore[misc]
    """The prompt is longer than ``max_prompt_len`` (given, or the engine's ``max_model_len``);
    nothing was sent (renderers' ``OverlongPromptError``, and a :class:`fasttito.FasttitoError`)."""

    def __init__(self, *, prompt_len: int, max_prompt_len: int) -> None:
        _rclient.OverlongPromptError.__init__(
            self, prompt_len=prompt_len, max_prompt_len=max_prompt_len
        )


class RendererConfig(BaseRendererConfig):  # type: ignore[misc]
    """The config of :class:`Renderer`. Every field but ``model_dir`` and ``stop_token_ids`` is a
    chat-template variable (``enable_thinking``...), passed to the template as is."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: Literal["fasttito"] = "fasttito"
    model_dir: str | None = None
    """The model folder (tokenizer.json, tokenizer_config.json / chat_template.jinja); default:
    the tokenizer's ``name_or_path``."""
    stop_token_ids: tuple[int, ...] | None = None
    """The ids a turn ends on; default: the folder's eos and generation_config.json ids."""

    _internal_fields: ClassVar[frozenset[str]] = frozenset({"model_dir", "stop_token_ids"})
    _template_fields: ClassVar[frozenset[str]] = frozenset()
    _allow_opaque_template_kwargs = True


_tokenizers: dict[str, _core.Tokenizer] = {}
_tokenizers_lock = threading.Lock()


def _load(model_dir: str) -> _core.Tokenizer:
    key = str(Path(model_dir).expanduser().resolve())
    with _tokenizers_lock:
        tok = _tokenizers.get(key)
        if tok is None:
            tok = _tokenizers[key] = _core.Tokenizer.from_dir(key)
        return tok


class _Attributed(RenderedTokens):  # type: ignore[misc]
    """RenderedTokens whose attribution is computed when first read (token ids come first)."""

    def __init__(
        self,
        token_ids: list[int],
        roles: list[str],
        tool_names: list[str | None],
        attribute: Callable[[], tuple[list[int], list[bool]]],
    ) -> None:
        self.__dict__["_attribute"] = attribute
        super().__init__(token_ids=token_ids, message_roles=roles, message_tool_names=tool_names)

    def __getstate__(self) -> dict[str, Any]:
        # pickled (or copied) with its attribution computed: the closure does not pickle
        self._fill()
        return dict(self.__dict__)

    def _fill(self) -> None:
        attribute = self.__dict__.pop("_attribute", None)
        if attribute is not None:
            indices, sampled = attribute()
            self.__dict__["message_indices"] = indices
            self.__dict__["sampled_mask"] = sampled
            self.__dict__["is_content"] = []


def _lazy(name: str) -> property:
    def get(self: _Attributed) -> Any:
        if name not in self.__dict__:
            self._fill()
        return self.__dict__[name]

    def put(self: _Attributed, value: Any) -> None:
        # RenderedTokens.__init__ assigns the defaults: keep them until the attribution is read
        if "_attribute" in self.__dict__ and value == []:
            return
        self.__dict__.pop("_attribute", None)
        self.__dict__[name] = value

    return property(get, put)


for _name in ("message_indices", "sampled_mask", "is_content"):
    setattr(_Attributed, _name, _lazy(_name))


def _roles(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(m.get("role") or "") for m in messages]


class Renderer:
    """A renderers 0.1.12 renderer for any model folder fasttito loads (see the module docs).

    ``render`` gives the ids of ``transformers.apply_chat_template``; ``bridge_to_next_turn``
    extends a turn by fasttito's TITO bridge (``../docs/renderers.md``); ``parse_response``
    decodes with fasttito's per-family decoders.
    """

    config_class: ClassVar[type[RendererConfig]] = RendererConfig
    supports_tools = True

    def __init__(self, tokenizer: Any = None, config: RendererConfig | None = None) -> None:
        cfg = config if config is not None else RendererConfig()
        if not isinstance(cfg, RendererConfig):
            raise ConfigError(
                f"fasttito.renderers.Renderer takes a fasttito.renderers.RendererConfig, got "
                f"{type(cfg).__name__}; load it through CustomRendererConfig(import_path="
                "'fasttito.renderers.Renderer', ...)"
            )
        if cfg.thinking_retention not in (None, "all", "tool_cycle"):
            raise ConfigError(
                f"thinking_retention={cfg.thinking_retention!r}: fasttito bridges keep every "
                "sampled token; use None or 'all' (bridge whenever TITO is safe) or 'tool_cycle' "
                "(re-render at a new user message)"
            )
        model_dir = cfg.model_dir or getattr(tokenizer, "name_or_path", None)
        if not model_dir or not Path(model_dir).expanduser().is_dir():
            raise ConfigError(
                f"fasttito.renderers.Renderer needs a local model folder: model_dir is "
                f"{cfg.model_dir!r} and the tokenizer's name_or_path is "
                f"{getattr(tokenizer, 'name_or_path', None)!r}; set model_dir in the renderer "
                "config (the folder with tokenizer.json and the chat template)"
            )
        self.config = cfg
        self.tokenizer = _load(str(model_dir))
        self._hf_tokenizer = tokenizer
        self._kwargs: dict[str, Any] | None = dict(cfg.model_extra or {}) or None
        self._stops = (
            list(cfg.stop_token_ids)
            if cfg.stop_token_ids is not None
            else list(self.tokenizer.stop_token_ids)
        )
        self._stop_set = frozenset(self._stops)
        self._stable: bool | None = None

    # -- the Renderer protocol --------------------------------------------------------------

    @property
    def is_prefix_stable(self) -> bool:
        """True when ``fasttito doctor`` finds every conversation shape ``exact`` (or rejected by
        the template itself): extending a conversation keeps its rendered ids. Computed once."""
        if self._stable is None:
            import logging

            from fasttito.cli import doctor

            text = doctor._template_text(Path(self.tokenizer.path))
            log = logging.getLogger("fasttito")
            level = log.level
            log.setLevel(logging.ERROR)  # the doctor's verify-mode differences are its results
            try:
                statuses = {
                    doctor.diagnose_shape(self.tokenizer, shape, self._stops).status
                    for shape in doctor.shapes(text)
                }
            finally:
                log.setLevel(level)
            self._stable = "exact" in statuses and statuses <= {"exact", "unsupported"}
        return self._stable

    def get_stop_token_ids(self) -> list[int]:
        return list(self._stops)

    def render_ids(
        self,
        messages: list[Any],
        *,
        tools: list[Any] | None = None,
        add_generation_prompt: bool = False,
    ) -> list[int]:
        ids: list[int] = self.tokenizer.apply_chat_template(
            messages, tools, add_generation_prompt, **(self._kwargs or {})
        )
        return ids

    def render(
        self,
        messages: list[Any],
        *,
        tools: list[Any] | None = None,
        add_generation_prompt: bool = False,
    ) -> RenderedTokens:
        """The ids of ``apply_chat_template``, with ``message_indices`` and ``sampled_mask``
        computed when first read (one render per message; ``is_content`` stays empty)."""
        _text_only(messages)
        ids = self.render_ids(messages, tools=tools, add_generation_prompt=add_generation_prompt)

        def attribute() -> tuple[list[int], list[bool]]:
            got, indices, sampled = _core.attribute(
                self.tokenizer, messages, tools, add_generation_prompt, self._kwargs, self._stops
            )
            if got != ids:  # the same render twice: a template with side effects
                raise FasttitoError("the chat template rendered the conversation differently twice")
            return indices, sampled

        return _Attributed(ids, _roles(messages), _message_tool_names(messages), attribute)

    def bridge_to_next_turn(
        self,
        previous_prompt_ids: list[int],
        previous_completion_ids: list[int],
        new_messages: list[Any],
        *,
        tools: list[Any] | None = None,
    ) -> RenderedTokens | None:
        """``previous_prompt_ids + previous_completion_ids`` verbatim, then fasttito's bridge for
        ``new_messages`` up to the next generation prompt; ``None`` where a rollout turn would
        fall back to messages (the completion does not end on a stop token, the new messages are
        not tool results optionally ending in one user message, the template rejects the
        bridge renders or they do not share a prefix) and at a user message with
        ``thinking_retention="tool_cycle"``."""
        if not previous_completion_ids or previous_completion_ids[-1] not in self._stop_set:
            return None
        if self.config.thinking_retention == "tool_cycle" and any(
            _role(m) == "user" for m in new_messages
        ):
            return None
        names = {
            str(m.get("tool_call_id")): str(m.get("name"))
            for m in new_messages
            if isinstance(m, Mapping) and m.get("tool_call_id") and m.get("name")
        }
        bridge, _reason, full, offset = _core.lone_bridge(
            self.tokenizer,
            previous_completion_ids[-1],
            new_messages,
            tools,
            self._kwargs,
            names or None,
        )
        if bridge is None or full is None:
            return None
        prior = len(previous_prompt_ids) + len(previous_completion_ids)
        ids = [*previous_prompt_ids, *previous_completion_ids, *bridge]

        def attribute() -> tuple[list[int], list[bool]]:
            _, indices, _ = _core.attribute(
                self.tokenizer, full, tools, True, self._kwargs, self._stops
            )
            # index 0 is the dummy assistant standing in for the previous turn
            tail = [i - 1 if i > 0 else -1 for i in indices[offset:]]
            return [-1] * prior + tail, [False] * len(ids)

        return _Attributed(ids, _roles(new_messages), _message_tool_names(new_messages), attribute)

    def parse_response(
        self,
        token_ids: list[int],
        *,
        tools: list[Any] | None = None,
        prompt_ids: list[int] | None = None,
    ) -> ParsedResponse:
        """The assistant message in ``token_ids`` through fasttito's decoder for the template's
        family: content, reasoning, and one :class:`ParsedToolCall` per call (``OK``), plus one
        ``INVALID_JSON`` entry per call block the decoder could not parse (its text stays in
        the content)."""
        turn = self.tokenizer.decode_completion(token_ids)
        calls = [
            ParsedToolCall(
                raw=call["function"]["arguments"],
                name=call["function"]["name"],
                arguments=_arguments(call["function"]["arguments"]),
                status=ToolCallParseStatus.OK,
            )
            for call in turn["tool_calls"]
        ]
        calls.extend(
            ParsedToolCall(raw="", status=ToolCallParseStatus.INVALID_JSON)
            for _ in range(int(turn["unparsed_tool_calls"] or 0))
        )
        reasoning = turn["reasoning_content"]
        return ParsedResponse(
            content=turn["content"] or "",
            reasoning_content=reasoning or None,
            tool_calls=calls,
            reasoning_complete=True if not reasoning else turn["stop_token_id"] is not None,
        )


def _role(message: Any) -> str:
    return str(
        message.get("role") if isinstance(message, Mapping) else getattr(message, "role", "")
    )


def _arguments(text: str) -> dict[str, Any] | str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def _text_only(messages: Sequence[Any]) -> None:
    for m in messages:
        content = m.get("content") if isinstance(m, Mapping) else getattr(m, "content", None)
        if isinstance(content, list) and any(
            isinstance(p, Mapping) and p.get("type") not in (None, "text", "thinking")
            for p in content
        ):
            raise NotImplementedError(
                "fasttito.renderers renders text conversations only (image / video parts are "
                "not supported); use a multimodal renderer from the renderers package"
            )


# -- generate --------------------------------------------------------------------------------

_max_len_lock = asyncio.Lock()


async def _max_prompt_len(client: Any, model: str) -> int | None:
    """``max_model_len`` of ``model`` from ``GET /v1/models``, asked once per (base URL, model).
    The cache is renderers' own, so a process that uses both clients asks once; a failed lookup
    is cached as ``None`` (no pre-flight), as renderers does."""
    cache = _rclient._max_prompt_len_cache
    key = (str(getattr(client, "base_url", "")), model)
    if key in cache:
        return cache[key]  # type: ignore[no-any-return]
    async with _max_len_lock:
        if key in cache:
            return cache[key]  # type: ignore[no-any-return]
        value: int | None = None
        try:
            payload = await client.get("/models", cast_to=dict)
            for card in payload.get("data") or []:
                if isinstance(card, Mapping) and card.get("id") == model:
                    raw = card.get("max_model_len")
                    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
                        value = raw
                    break
        except Exception:  # any failure: no cap known, as renderers does
            value = None
        cache[key] = value
        return value


def _check_logprobs(body: bytes, completion_ids: Sequence[int]) -> list[float]:
    """renderers' checks of the logprob entries, for a body the Rust parser refused or whose
    logprobs it kept as evidence-free (null, the sentinel): the error says which entry."""
    try:
        data = json.loads(body)
        choice = (data.get("choices") or [{}])[0]
    except (ValueError, AttributeError, IndexError, TypeError):
        raise MalformedGenerateResponseError("Engine response is not a generate object.") from None
    raw = choice.get("logprobs") if isinstance(choice, Mapping) else None
    if not isinstance(raw, Mapping):
        raise MalformedGenerateResponseError("Engine response choice.logprobs must be an object.")
    content = raw.get("content")
    if not isinstance(content, list):
        raise MalformedGenerateResponseError(
            "Engine response choice.logprobs.content must be a list."
        )
    if len(content) != len(completion_ids):
        raise MalformedGenerateResponseError(
            f"Engine response completion token count ({len(completion_ids)}) does not match "
            f"logprob count ({len(content)})."
        )
    out = []
    for i, entry in enumerate(content):
        where = f"Engine response choice.logprobs.content[{i}]"
        if not isinstance(entry, Mapping):
            raise MalformedGenerateResponseError(f"{where} must be an object.")
        want = completion_ids[i]
        if "token_id" in entry:  # vLLM 0.32 tokens mode
            if entry["token_id"] != want or isinstance(entry["token_id"], bool):
                raise MalformedGenerateResponseError(f"{where}.token_id must be {want}.")
        elif entry.get("token") != f"token_id:{want}":
            raise MalformedGenerateResponseError(f"{where}.token must be 'token_id:{want}'.")
        value = entry.get("logprob")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedGenerateResponseError(f"{where}.logprob must be a number.")
        try:
            value = float(value)
        except OverflowError:
            raise MalformedGenerateResponseError(f"{where}.logprob must be finite.") from None
        if not math.isfinite(value):
            raise MalformedGenerateResponseError(f"{where}.logprob must be finite.")
        if value == _SENTINEL:
            raise MalformedGenerateResponseError(
                f"{where}.logprob does not contain sampling evidence."
            )
        out.append(value)
    return out


def _routed(raw: bytes | None) -> Any:
    """The ``routed_experts`` object with its base64 ``data`` as a memoryview (not decoded)."""
    if raw is None:
        return None
    found = _ROUTED_DATA.search(raw)
    if found is None:
        return json.loads(raw)
    start = found.end()
    end = raw.index(b'"', start)
    value = json.loads(raw[:start] + raw[end:])
    value["data"] = memoryview(raw)[start:end]
    return value


def _usage(body: bytes) -> Any:
    """The top-level ``usage`` object as the engine sent it (the parser keeps only the counts)."""
    at = body.rfind(b'"usage":')
    while at > 0 and body[at - 1 : at] == b"\\":
        at = body.rfind(b'"usage":', 0, at - 1)
    if at < 0:
        return None
    text = body[at + len(b'"usage":') :].decode("utf-8", "replace").lstrip()
    value, _ = json.JSONDecoder().raw_decode(text)
    return value


async def generate(
    *,
    client: Any,
    renderer: Any,
    messages: list[Any],
    model: str,
    prompt_ids: list[int] | None = None,
    multi_modal_data: Any = None,
    prompt_attribution: Any = None,
    tools: list[Any] | None = None,
    sampling_params: dict[str, Any] | None = None,
    cache_salt: str | None = None,
    priority: int | None = None,
    extra_headers: dict[str, str] | None = None,
    max_prompt_len: int | None = None,
    process_multimodal: bool = True,
) -> dict[str, Any]:
    """``renderers.client.generate`` (0.1.12) for text prompts: render (or take ``prompt_ids``),
    pre-flight the prompt length, POST ``/inference/v1/generate`` through ``client.post``, parse
    the response in Rust with renderers' checks, parse the completion with the renderer. Same
    keywords, same result dict."""
    if not process_multimodal or (multi_modal_data is not None and not _empty(multi_modal_data)):
        raise NotImplementedError(
            "fasttito.renderers.generate sends text prompts only (process_multimodal=False and "
            "multi_modal_data need renderers.client.generate)"
        )
    if tools and not getattr(renderer, "supports_tools", True):
        raise ValueError(
            f"{type(renderer).__name__} does not support tools. "
            "Choose a model-specific renderer instead of the default fallback."
        )
    if prompt_ids is not None:
        # not copied: the result's prompt_ids is the caller's list (renderers copies it twice,
        # which at 100k ids is most of a turn's client CPU)
        ids = prompt_ids if type(prompt_ids) is list else list(prompt_ids)
        attribution = prompt_attribution
    else:
        attribution = renderer.render(messages, tools=tools, add_generation_prompt=True)
        if attribution.multi_modal_data is not None and not _empty(attribution.multi_modal_data):
            raise NotImplementedError(
                "fasttito.renderers.generate sends text prompts only; this conversation has "
                "image or video parts (use renderers.client.generate)"
            )
        ids = attribution.token_ids
    stop_ids = renderer.get_stop_token_ids()
    if max_prompt_len is None:
        max_prompt_len = await _max_prompt_len(client, model)
    if max_prompt_len is not None and len(ids) > max_prompt_len:
        raise OverlongPromptError(prompt_len=len(ids), max_prompt_len=max_prompt_len)

    sp = dict(sampling_params or {})
    sp["stop_token_ids"] = stop_ids
    sp["logprobs"] = 1
    sp.setdefault("skip_special_tokens", False)
    body: dict[str, Any] = {"model": model, "token_ids": ids, "sampling_params": sp}
    if cache_salt is not None:
        body["cache_salt"] = cache_salt
    if priority is not None:
        body["priority"] = priority
    base = str(client.base_url).rstrip("/").removesuffix("/v1")
    kwargs: dict[str, Any] = {"cast_to": _httpx_response(), "body": body}
    if extra_headers:
        kwargs["options"] = {"headers": extra_headers}
    response = await client.post(f"{base}/inference/v1/generate", **kwargs)
    raw: bytes = response.content

    try:
        parsed = _core.parse_response(raw, "vllm-generate")
    except ResponseParseError as exc:
        # renderers' own words for the entry at fault; anything else keeps the parser's
        completion = _completion_ids(raw)
        if completion is not None:
            _check_logprobs(raw, completion)
        raise MalformedGenerateResponseError(str(exc)) from exc
    completion_ids = parsed.completion_ids.tolist()
    logprobs = parsed.completion_logprobs
    if logprobs is None or parsed.null_logprobs or _SENTINEL in logprobs:
        logprobs = _check_logprobs(raw, completion_ids)
    elif not all(math.isfinite(x) for x in logprobs):
        logprobs = _check_logprobs(raw, completion_ids)

    if parsed.prompt_ids is not None:
        ids = parsed.prompt_ids.tolist()
    result = renderer.parse_response(completion_ids, prompt_ids=ids, tools=tools)
    finish = parsed.finish_reason
    if finish == "stop" and any(tc.status == ToolCallParseStatus.OK for tc in result.tool_calls):
        finish = "tool_calls"
    return {
        "request_id": parsed.response_id or "",
        "usage": _usage(raw) if parsed.usage is not None else None,
        "prompt_ids": ids,
        "renderer_prompt_ids": None,
        "mm_placeholders": None,
        "completion_ids": completion_ids,
        "completion_logprobs": logprobs,
        "content": result.content,
        "reasoning_content": result.reasoning_content,
        "tool_calls": result.tool_calls,
        "finish_reason": finish,
        "reasoning_complete": result.reasoning_complete,
        "routed_experts": _routed(parsed.routed_experts),
        "sampling_mask": None,
        "multi_modal_data": multi_modal_data,
        "prompt_attribution": attribution,
    }


def _empty(mm: Any) -> bool:
    is_empty = getattr(mm, "is_empty", None)
    return bool(is_empty()) if callable(is_empty) else not mm


def _httpx_response() -> Any:
    import httpx  # renderers' dependency (through openai)

    return httpx.Response


def _completion_ids(raw: bytes) -> list[int] | None:
    try:
        ids = json.loads(raw)["choices"][0]["token_ids"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return ids if isinstance(ids, list) else None
