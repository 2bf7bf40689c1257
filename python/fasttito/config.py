"""Client configuration: transport names and their aliases, and the frozen settings of a Client.

>>> from fasttito.config import resolve_transport
>>> resolve_transport("prime_vllm_generate"), resolve_transport("dynamo")
('vllm-chat-tokens', 'dynamo-nvext')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

from fasttito.errors import ConfigError
from fasttito.rollout import DEFAULT_MAX_ROLLOUT_MESSAGES, DEFAULT_MAX_ROLLOUT_TOKENS

__all__ = [
    "CHAT_TARGETS",
    "TRANSPORTS",
    "TRANSPORT_ALIASES",
    "ClientConfig",
    "TransportName",
    "redact_url",
    "resolve_transport",
    "split_base_url",
]

TransportName = Literal[
    "vllm-generate", "vllm-chat-tokens", "dynamo-nvext", "sglang-generate", "chat", "auto"
]

#: The transport ids (docs/transports.md).
TRANSPORTS: tuple[str, ...] = (
    "vllm-generate",
    "vllm-chat-tokens",
    "dynamo-nvext",
    "sglang-generate",
    "chat",
    "auto",
)

#: Names users already use (verifiers, renderers, prime-rl; docs/wire.md "Transport-name history").
TRANSPORT_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "vllm_generate": "vllm-generate",
        "prime_vllm_generate": "vllm-chat-tokens",
        "vllm_chat_tokens": "vllm-chat-tokens",
        "dynamo_chat_nvext": "dynamo-nvext",
        "dynamo_nvext": "dynamo-nvext",
        "dynamo": "dynamo-nvext",
        "dynamo_chat": "dynamo-nvext",
        "sglang": "sglang-generate",
        "sglang_generate": "sglang-generate",
    }
)

#: Where plain chat completions go: which keys the body may carry (``_core.request_body``).
CHAT_TARGETS: tuple[str, ...] = ("vllm", "dynamo", "openai")


def resolve_transport(name: str) -> str:
    """The transport id of ``name`` (an id or an alias); a :class:`ConfigError` listing the
    accepted names otherwise."""
    if not isinstance(name, str):
        raise ConfigError(f"transport must be a string, got {type(name).__name__}")
    if name in TRANSPORTS:
        return name
    if name in TRANSPORT_ALIASES:
        return TRANSPORT_ALIASES[name]
    accepted = ", ".join([*TRANSPORTS, *TRANSPORT_ALIASES])
    raise ConfigError(f"unknown transport {name!r}; accepted: {accepted}")


def split_base_url(base_url: str) -> tuple[str, str]:
    """``(root, v1)`` of a server: ``http://h:8000/v1`` and ``http://h:8000`` both give
    ``("http://h:8000", "http://h:8000/v1")``. The vLLM routes ``/tokenize`` and
    ``/inference/v1/generate`` live at the root (docs/wire.md B.1, B.2)."""
    if not isinstance(base_url, str) or not base_url:
        raise ConfigError("base_url must be a non-empty string such as 'http://127.0.0.1:8000/v1'")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000/v1', got "
            f"{redact_url(base_url)!r}"
        )
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root, root + "/v1"


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment (they may hold credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """The settings of a :class:`fasttito.Client` (see its docstring for each field).

    ``api_key`` and ``headers`` are kept out of ``repr`` (and out of every error and log).
    """

    base_url: str
    model: str
    transport: str = "auto"
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 600.0
    max_retries: int = 2
    backoff: float = 0.5
    backoff_max: float = 30.0
    max_connections: int = 4096
    max_body_bytes: int = 1 << 30
    max_error_body_bytes: int = 64 << 10
    chat_target: str | None = None
    dynamo_first_turn: Literal["tokens", "messages"] = "tokens"
    check_prompt_length: bool = True
    max_json_depth: int = 64
    template_fuel: int = 5_000_000
    template_recursion: int = 200
    max_rollout_messages: int = DEFAULT_MAX_ROLLOUT_MESSAGES
    max_rollout_tokens: int = DEFAULT_MAX_ROLLOUT_TOKENS
    routing_key_header: str | None = None
    routing_key_buckets: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "transport", resolve_transport(self.transport))
        split_base_url(self.base_url)
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("model must be the served model name, a non-empty string")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise ConfigError("api_key must be a string or None")
        headers = dict(self.headers or {})
        for k, v in headers.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigError("headers must map str to str")
        object.__setattr__(self, "headers", MappingProxyType(headers))
        has_auth = self.api_key or any(k.lower() == "authorization" for k in headers)
        if has_auth and "@" in urlsplit(self.base_url).netloc:
            # aiohttp refuses both with a bare ValueError at the first request
            raise ConfigError(
                f"base_url {redact_url(self.base_url)!r} carries credentials (user:password@) and "
                "an api_key or Authorization header is set too; only one can be sent: drop the "
                "credentials from the URL or the api_key"
            )
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if not (isinstance(self.max_retries, int) and self.max_retries >= 0):
            raise ConfigError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ConfigError("backoff and backoff_max must be >= 0")
        if not (isinstance(self.max_connections, int) and self.max_connections >= 0):
            raise ConfigError("max_connections must be an integer >= 0 (0: no limit)")
        for name in (
            "max_body_bytes",
            "max_error_body_bytes",
            "max_json_depth",
            "template_fuel",
            "template_recursion",
            "max_rollout_messages",
            "max_rollout_tokens",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.chat_target is not None and self.chat_target not in CHAT_TARGETS:
            raise ConfigError(
                f"chat_target must be one of {', '.join(CHAT_TARGETS)}, got {self.chat_target!r}"
            )
        rk = self.routing_key_header
        if rk is not None and (
            not isinstance(rk, str) or not rk or not all(c.isalnum() or c in "-_" for c in rk)
        ):
            raise ConfigError(
                "routing_key_header must be an HTTP header name such as 'X-SMG-Routing-Key' "
                f"(letters, digits, '-' and '_'), got {rk!r}"
            )
        buckets = self.routing_key_buckets
        if buckets is not None:
            if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets <= 0:
                raise ConfigError(
                    f"routing_key_buckets must be a positive integer (the number of data-parallel "
                    f"ranks), got {buckets!r}"
                )
            if rk is None:
                raise ConfigError(
                    "routing_key_buckets needs routing_key_header (the header that carries the "
                    "bucket, e.g. 'X-data-parallel-rank')"
                )
        if self.dynamo_first_turn not in ("tokens", "messages"):
            raise ConfigError(
                f"dynamo_first_turn must be 'tokens' or 'messages', got {self.dynamo_first_turn!r}"
            )

    def __repr__(self) -> str:
        return (
            f"ClientConfig(base_url={redact_url(self.base_url)!r}, model={self.model!r}, "
            f"transport={self.transport!r}, api_key={'<set>' if self.api_key else None}, "
            f"headers={sorted(self.headers)!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries!r}, chat_target={self.chat_target!r}, "
            f"dynamo_first_turn={self.dynamo_first_turn!r})"
        )

    @cached_property
    def root_url(self) -> str:
        """The server's root (``/tokenize``, ``/inference/v1/generate``); computed once."""
        return split_base_url(self.base_url)[0]

    @cached_property
    def v1_url(self) -> str:
        """The server's OpenAI base (``.../v1``); computed once."""
        return split_base_url(self.base_url)[1]

    def secrets(self) -> list[str]:
        """Values that must never appear in an error or a log: the api key and header values."""
        out = [v for v in self.headers.values() if len(v) >= 4]
        if self.api_key:
            out.append(self.api_key)
        return sorted(set(out), key=len, reverse=True)
