"""Type stubs of the compiled core, written by hand (checked by ``mypy.stubtest``)."""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from os import PathLike
from typing import Any, Literal, final, overload

__all__ = [
    "ParsedResponse",
    "PendingBridge",
    "Plan",
    "Rollout",
    "TokenIds",
    "TokenIdsIterator",
    "Tokenizer",
    "TurnData",
    "__version__",
    "attribute",
    "build_profile",
    "complete_turn",
    "decode_completion",
    "lone_bridge",
    "metrics",
    "parse_response",
    "parse_turn",
    "plan_ids",
    "request_body",
    "reset_metrics",
]

__version__: str
build_profile: Literal["debug", "release"]

@final
class Tokenizer:
    """A tokenizer and chat template(s) loaded from a model folder, in Rust."""

    @staticmethod
    def from_dir(
        path: str | PathLike[str],
        *,
        template_fuel: int = ...,
        cache_bytes: int = ...,
        template_recursion: int = ...,
    ) -> Tokenizer: ...
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...
    @overload
    def apply_chat_template(
        self,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        tokenize: Literal[True] = True,
        continue_final_message: bool | str | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        **template_kwargs: Any,
    ) -> list[int]: ...
    @overload
    def apply_chat_template(
        self,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        *,
        tokenize: Literal[False],
        continue_final_message: bool | str | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        **template_kwargs: Any,
    ) -> str: ...
    @property
    def stop_token_ids(self) -> list[int]: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def special_tokens(self) -> dict[str, str]: ...
    @property
    def eos_token(self) -> str | None: ...
    @property
    def bos_token(self) -> str | None: ...
    @property
    def chat_template_names(self) -> list[str]: ...
    @property
    def model_max_length(self) -> int | None: ...
    @property
    def path(self) -> str: ...
    def token_to_id(self, token: str) -> int | None: ...
    def id_to_token(self, id: int) -> str | None: ...
    def cache_stats(self) -> dict[str, int]: ...
    def decode_completion(
        self, ids: Sequence[int], family: str | None = None
    ) -> dict[str, Any]: ...

def decode_completion(
    tokenizer: Tokenizer, ids: Sequence[int], family: str | None = None
) -> dict[str, Any]: ...
def metrics() -> list[tuple[str, int]]: ...

@final
class TokenIdsIterator:
    """The iterator of a ``TokenIds``: it shares the buffer and yields one id at a time."""

    def __iter__(self) -> TokenIdsIterator: ...
    def __next__(self) -> int: ...
    def __length_hint__(self) -> int: ...

@final
class TokenIds:
    """Token ids held in Rust: a read-only sequence of ints and a uint32 buffer."""

    def __new__(cls, ids: Sequence[int]) -> TokenIds: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, key: int, /) -> int: ...
    @overload
    def __getitem__(self, key: slice, /) -> list[int]: ...
    def __iter__(self) -> Iterator[int]: ...
    def __contains__(self, key: int, /) -> bool: ...
    def count(self, id: int) -> int: ...
    def index(self, id: int) -> int: ...
    def max(self) -> int | None: ...
    def tolist(self) -> list[int]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __add__(self, value: Sequence[int], /) -> list[int]: ...
    def __radd__(self, value: Sequence[int], /) -> list[int]: ...

def reset_metrics() -> None: ...

@final
class Plan:
    """The plan for one turn: TITO ids, or MITO and why."""

    def count(self) -> bool: ...
    @property
    def mode(self) -> Literal["tito", "mito"]: ...
    @property
    def fallback_reason(self) -> str | None: ...
    @property
    def prompt_ids(self) -> TokenIds | None: ...
    @property
    def tokens_reused(self) -> int: ...
    @property
    def bridge_tokens(self) -> int: ...
    @property
    def gap(self) -> int: ...
    @property
    def deduped(self) -> bool: ...
    @property
    def turn(self) -> int: ...
    @property
    def matched_turn(self) -> int | None: ...
    @property
    def verify(self) -> dict[str, Any] | None: ...
    @property
    def prompt_len(self) -> int | None: ...
    @property
    def body(self) -> bytes | None: ...
    @property
    def sends_ids(self) -> bool: ...

@final
class PendingBridge:
    """A TITO turn waiting for its bridge to be tokenized elsewhere."""

    @property
    def full_messages(self) -> list[dict[str, Any]]: ...
    @property
    def base_messages(self) -> list[dict[str, Any]]: ...

@final
class Rollout:
    """One conversation's TITO state (the Rust half of ``fasttito.Rollout``)."""

    def __new__(
        cls,
        tokenizer: Tokenizer | None = None,
        *,
        stop_token_ids: list[int] | None = None,
        verify: bool = False,
        max_messages: int = ...,
        max_tokens: int = ...,
    ) -> Rollout: ...
    def __len__(self) -> int: ...
    @property
    def held_ids(self) -> int: ...
    @property
    def cached_messages(self) -> int: ...
    def prepare(
        self,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        *,
        render_mito: bool = True,
    ) -> Plan: ...
    def begin(
        self,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> Plan | PendingBridge: ...
    def finish(
        self, pending: PendingBridge, full_ids: list[int] | None, base_ids: list[int] | None
    ) -> Plan: ...
    def plan_turn(
        self,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        *,
        kind: str,
        model: str,
        transport: str,
        sampling: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        stop_token_ids: list[int] | None = None,
        cache_salt: str | None = None,
        priority: int | None = None,
        body_template_kwargs: bool = False,
        top_logprobs: int | None = None,
        messages_target: str | None = None,
        mito_messages: bool = False,
        vocab_size: int | None = None,
        render_mito: bool = True,
    ) -> Plan: ...
    def plan_body(
        self,
        plan: Plan,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        *,
        kind: str,
        model: str,
        transport: str,
        sampling: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        stop_token_ids: list[int] | None = None,
        cache_salt: str | None = None,
        priority: int | None = None,
        body_template_kwargs: bool = False,
        top_logprobs: int | None = None,
        messages_target: str | None = None,
        mito_messages: bool = False,
        vocab_size: int | None = None,
    ) -> Plan: ...
    def complete(
        self,
        plan: Plan,
        body: bytes,
        *,
        wire: str,
        transport: str,
        decode_locally: bool,
        top_logprobs: int | None = None,
        vocab_size: int | None = None,
        max_body_bytes: int = ...,
        max_depth: int = ...,
    ) -> TurnData: ...
    def ingest(
        self,
        prompt: Iterable[Any],
        completion: Iterable[Any],
        prompt_ids: list[int],
        completion_ids: list[int],
        is_truncated: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> None: ...
    def record(
        self,
        plan: Plan,
        completion_ids: Sequence[int] | TokenIds,
        message: Any,
        finish_reason: str | None = None,
        prompt_ids: Sequence[int] | TokenIds | None = None,
    ) -> None: ...

@final
class TurnData:
    """One completed turn, as ``fasttito.Turn`` reads it: ids as ``TokenIds`` views (the same
    object on every access), lists and dicts built on first access and kept."""

    @property
    def prompt_ids(self) -> TokenIds | None: ...
    @property
    def completion_ids(self) -> TokenIds: ...
    @property
    def completion_logprobs(self) -> list[float] | None: ...
    @property
    def completion_top_logprobs(self) -> list[list[tuple[int, float]]] | None: ...
    @property
    def content(self) -> str | None: ...
    @property
    def reasoning_content(self) -> str | None: ...
    @property
    def tool_calls(self) -> list[dict[str, Any]]: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def stop_reason(self) -> int | str | None: ...
    @property
    def usage(self) -> dict[str, Any] | None: ...
    @property
    def response_id(self) -> str | None: ...
    @property
    def routed_experts(self) -> bytes | None: ...
    @property
    def cached_tokens(self) -> int | None: ...
    @property
    def null_logprobs(self) -> int: ...
    @property
    def unparsed_tool_calls(self) -> int: ...
    @property
    def message(self) -> dict[str, Any]: ...
    @property
    def mode(self) -> Literal["tito", "mito"]: ...
    @property
    def fallback_reason(self) -> str | None: ...
    @property
    def tokens_reused(self) -> int | None: ...
    @property
    def bridge_tokens(self) -> int | None: ...
    @property
    def turn(self) -> int: ...
    @property
    def transport(self) -> str: ...
    @property
    def prompt_mismatch(self) -> tuple[int, int] | None: ...
    @property
    def engine_prompt_ids(self) -> bool: ...

def parse_turn(
    body: bytes,
    wire: str,
    *,
    transport: str,
    turn: int,
    top_logprobs: int | None = None,
    max_body_bytes: int = ...,
    max_depth: int = ...,
) -> TurnData: ...
def complete_turn(
    plan: Plan,
    body: bytes,
    *,
    wire: str,
    transport: str,
    decode_locally: bool,
    tokenizer: Tokenizer | None = None,
    top_logprobs: int | None = None,
    vocab_size: int | None = None,
    max_body_bytes: int = ...,
    max_depth: int = ...,
) -> TurnData: ...
def plan_ids(
    prompt_ids: Sequence[int] | TokenIds,
    messages: Iterable[Any],
    tools: Sequence[Mapping[str, Any]] | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    *,
    turn: int,
    tito: bool = True,
    kind: str,
    model: str,
    transport: str,
    sampling: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    stop_token_ids: list[int] | None = None,
    cache_salt: str | None = None,
    priority: int | None = None,
    body_template_kwargs: bool = False,
    top_logprobs: int | None = None,
    messages_target: str | None = None,
    mito_messages: bool = False,
    vocab_size: int | None = None,
) -> Plan: ...

@final
class ParsedResponse:
    """A server response parsed in Rust."""

    @property
    def completion_ids(self) -> TokenIds: ...
    @property
    def completion_logprobs(self) -> list[float] | None: ...
    @property
    def completion_top_logprobs(self) -> list[list[tuple[int, float]]] | None: ...
    @property
    def cached_tokens(self) -> int | None: ...
    @property
    def null_logprobs(self) -> int: ...
    @property
    def prompt_ids(self) -> TokenIds | None: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def stop_reason(self) -> int | str | None: ...
    @property
    def content(self) -> str | None: ...
    @property
    def reasoning_content(self) -> str | None: ...
    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """In the OpenAI shape; on the ``"chat"`` wire each object as sent."""
    @property
    def usage(self) -> dict[str, Any] | None:
        """The three counters; on the ``"chat"`` wire the ``usage`` object as sent."""
    @property
    def response_id(self) -> str | None: ...
    @property
    def routed_experts(self) -> bytes | None: ...
    @property
    def body(self) -> bytes: ...

def parse_response(
    body: bytes, wire: str, *, max_body_bytes: int = ..., max_depth: int = ...
) -> ParsedResponse: ...
def request_body(
    kind: str,
    model: str,
    *,
    token_ids: Sequence[int] | None = None,
    messages: Sequence[Any] | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    sampling: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    stop_token_ids: list[int] | None = None,
    cache_salt: str | None = None,
    priority: int | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    target: str = "vllm",
    top_logprobs: int | None = None,
) -> bytes: ...
def attribute(
    tokenizer: Tokenizer,
    messages: Sequence[Any],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = False,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    stop_token_ids: list[int] | None = None,
) -> tuple[list[int], list[int], list[bool]]: ...
def lone_bridge(
    tokenizer: Tokenizer,
    stop_id: int,
    tail: Sequence[Any],
    tools: Sequence[Mapping[str, Any]] | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    tool_names: Mapping[str, str] | None = None,
) -> tuple[list[int] | None, str | None, list[dict[str, Any]] | None, int]: ...
