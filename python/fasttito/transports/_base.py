"""What every transport shares: the turn result (:class:`Turn`), one call's arguments, and the
base class that runs a token transport's one flow from the transport's data."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fasttito import _core
from fasttito.errors import InvalidTokenIdError
from fasttito.rollout import Rollout
from fasttito.tokens import TokenIds

if TYPE_CHECKING:
    from fasttito.transports._session import Session

__all__ = [
    "GenerateArgs",
    "RolloutState",
    "Transport",
    "Turn",
    "assistant_message",
    "check_prompt_ids",
]

logger = logging.getLogger("fasttito")


_TURN_FIELDS = (
    "prompt_ids",
    "completion_ids",
    "completion_logprobs",
    "content",
    "reasoning_content",
    "tool_calls",
    "finish_reason",
    "mode",
    "fallback_reason",
    "transport",
    "turn",
    "stop_reason",
    "usage",
    "response_id",
    "routed_experts",
    "null_logprobs",
    "unparsed_tool_calls",
    "tokens_reused",
    "bridge_tokens",
    "completion_top_logprobs",
    "cached_tokens",
)
_REQUIRED = _TURN_FIELDS[:11]
_DEFAULTS: dict[str, Any] = {
    "stop_reason": None,
    "usage": None,
    "response_id": None,
    "routed_experts": None,
    "null_logprobs": 0,
    "unparsed_tool_calls": 0,
    "tokens_reused": None,
    "bridge_tokens": None,
    "completion_top_logprobs": None,
    "cached_tokens": None,
}


class _Fields:
    """A turn's data given field by field (``Turn(prompt_ids=..., ...)``, the ``chat``
    transport's plain OpenAI responses): what :class:`_core.TurnData` is for a parsed turn."""

    __slots__ = (*_TURN_FIELDS, "message")

    def __init__(self, values: dict[str, Any]) -> None:
        for name in _TURN_FIELDS:
            setattr(self, name, values[name])
        self.message = values["message"]


def _field(name: str, doc: str) -> property:
    def get(self: Turn) -> Any:
        return getattr(self._d, name)

    return property(get, doc=doc)


class Turn:
    """One generated turn.

    ``prompt_ids`` are the ids the engine generated from (the server's when it reports them,
    else the ids fasttito sent); ``completion_ids`` the sampled ids (ending in the stop token
    unless truncated); ``completion_logprobs`` are 1:1 with them (NaN where the server sent
    ``null``) or None when the server sent none (with ``chat_target="openai"``, a server that
    sends logprobs without ids gives one per generated token and empty ``completion_ids``).
    ``mode`` is ``"tito"`` or ``"mito"`` and ``fallback_reason`` says why a turn went MITO.
    :meth:`message` is the assistant message to append to the conversation (the very dict
    recorded in the rollout). On a TITO turn
    ``tokens_reused`` prompt ids were copied verbatim from the matched turn and ``bridge_tokens``
    rendered for the new messages (``tokens_reused + bridge_tokens == len(prompt_ids)``); both
    are 0 on a MITO turn and None on the ``chat`` transport, which keeps no rollout.
    ``completion_top_logprobs`` are, per completion id, the engine's top alternatives as
    ``(token id, logprob)`` pairs when asked for (``top_logprobs=k``) and sent, else None.
    ``cached_tokens`` is how many prompt tokens the engine found in its prefix cache, on wires
    that report it (SGLang ``meta_info.cached_tokens``; vLLM/Dynamo
    ``usage.prompt_tokens_details.cached_tokens``), else None.

    The fields are read-only and read the turn's data where it was parsed (Rust): the ids are
    :class:`~fasttito.TokenIds` views of the parsed buffers (the same object on every access),
    the lists and dicts are built on first access and then kept. ``Turn(prompt_ids=..., ...)``
    builds one from its fields (``message`` optional: built from content, reasoning and tool
    calls when not given).
    """

    __slots__ = ("_d",)
    _d: Any

    def __init__(self, *args: Any, message: dict[str, Any] | None = None, **fields: Any) -> None:
        if len(args) == 1 and not fields and isinstance(args[0], (_core.TurnData, _Fields)):
            object.__setattr__(self, "_d", args[0])
            return
        if len(args) > len(_TURN_FIELDS):
            raise TypeError(f"Turn takes at most {len(_TURN_FIELDS)} positional fields")
        values = dict(_DEFAULTS)
        for name, value in zip(_TURN_FIELDS, args, strict=False):
            if name in fields:
                raise TypeError(f"Turn got two values for {name!r}")
            values[name] = value
        unknown = set(fields) - set(_TURN_FIELDS) - {"_message"}
        if unknown:
            raise TypeError(f"Turn got unexpected fields {sorted(unknown)}")
        message = fields.pop("_message", message)
        values.update(fields)
        missing = [name for name in _REQUIRED if name not in values]
        if missing:
            raise TypeError(f"Turn is missing the fields {missing}")
        if message is None:
            message = assistant_message(
                values["content"], values["reasoning_content"], values["tool_calls"]
            )
        values["message"] = message
        object.__setattr__(self, "_d", _Fields(values))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Turn is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Turn is read-only: cannot delete {name!r}")

    prompt_ids = _field("prompt_ids", "The engine's prompt ids (TokenIds), or None.")
    completion_ids = _field("completion_ids", "The sampled ids (TokenIds).")
    completion_logprobs = _field("completion_logprobs", "Logprobs 1:1 with the ids, or None.")
    content = _field("content", "The message text.")
    reasoning_content = _field("reasoning_content", "The reasoning text.")
    tool_calls = _field("tool_calls", "Tool calls in the OpenAI shape.")
    finish_reason = _field("finish_reason", "stop, length, tool_calls, ...")
    mode = _field("mode", '"tito" or "mito".')
    fallback_reason = _field("fallback_reason", "Why the turn went as messages, or None.")
    transport = _field("transport", "The transport that ran the turn.")
    turn = _field("turn", "The turn's number (1-based).")
    stop_reason = _field("stop_reason", "The stop id or string the server reports.")
    usage = _field("usage", "Token usage, if sent.")
    response_id = _field("response_id", "The response id.")
    routed_experts = _field("routed_experts", "The routed_experts sidecar (raw JSON bytes).")
    null_logprobs = _field("null_logprobs", "How many logprobs were null.")
    unparsed_tool_calls = _field("unparsed_tool_calls", "Tool calls left in content.")
    tokens_reused = _field("tokens_reused", "Ids copied verbatim from the matched turn.")
    bridge_tokens = _field("bridge_tokens", "Ids rendered for the new messages.")
    completion_top_logprobs = _field("completion_top_logprobs", "Top (id, logprob) pairs.")
    cached_tokens = _field("cached_tokens", "Prompt tokens found in the prefix cache.")

    @property
    def is_truncated(self) -> bool:
        """The turn was cut by the length limit (no stop token at its end)."""
        finish: str | None = self._d.finish_reason
        return finish == "length"

    def message(self) -> dict[str, Any]:
        """The assistant message (OpenAI shape) to append to the conversation. It is the dict
        recorded in the rollout: append it as is (a rebuilt equal dict also matches)."""
        m: dict[str, Any] = self._d.message
        return m

    def __repr__(self) -> str:
        d = self._d
        ids = d.prompt_ids
        n = len(ids) if ids is not None else None
        return (
            f"Turn(turn={d.turn}, mode={d.mode!r}, fallback_reason={d.fallback_reason!r}, "
            f"prompt_ids=<{n} ids>, completion_ids=<{len(d.completion_ids)} ids>, "
            f"finish_reason={d.finish_reason!r}, content={d.content!r}, "
            f"tool_calls={len(d.tool_calls)})"
        )


@dataclass(slots=True)
class GenerateArgs:
    messages: list[Any]
    tools: list[Any] | None
    max_tokens: int | None
    sampling: dict[str, Any]
    cache_salt: str | None
    priority: int | None
    chat_template_kwargs: dict[str, Any] | None
    top_logprobs: int | None = None


@dataclass(slots=True)
class RolloutState:
    """Per-conversation state a transport keeps: the TITO engine (None for ``chat``), the
    turns so far, and the headers every request of this conversation carries (the routing
    key, see ``Client(routing_key_header=...)``)."""

    rollout: Rollout | None
    turns: list[Turn] = field(default_factory=list)
    headers: dict[str, str] | None = None


def assistant_message(
    content: str | None, reasoning_content: str | None, tool_calls: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The assistant message to append: role, content, and reasoning/tool calls when present."""
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning_content is not None:
        msg["reasoning_content"] = reasoning_content
    if tool_calls:
        msg["tool_calls"] = [dict(tc) for tc in tool_calls]
    return msg


class Transport:
    """Base of the transports: ``name`` is the transport id, ``wire`` the response shape.

    A token transport is data: the body ``kind`` its ids go out as and the route they go to
    (``ids_route``: ``(base, path)``, base ``"root"`` or ``"v1"``), how a turn without ids to
    send goes (``messages_target``, the ``chat`` body's target, to ``messages_route``),
    whether MITO turns go as messages even when rendered locally (``mito_messages``), whether
    the message is decoded locally from the ids (``decode_locally``), and which arguments its
    body takes (``sends_stop_ids``, ``body_template_kwargs``, ``sends_top_logprobs``). The
    one flow (:meth:`generate`) is: :meth:`plan` the turn and write its body (one call into
    Rust), :meth:`send` it (the length pre-flight, the POST), then :meth:`complete` it: parse,
    check, decode and record (one call). Special steps override :meth:`plan`
    (``vllm-chat-tokens``' remote ``/tokenize`` bridges, whether a MITO turn is rendered) or
    :meth:`generate` (``chat``, which keeps no rollout). ``fasttito.verifiers``, which keeps its
    turns in verifiers' trajectory, drives the same steps: its own plan given a body by
    :meth:`plan_body` (or a caller's ids by :meth:`plan_ids`), :meth:`send`, and
    :meth:`complete` with ``record=False``."""

    name = ""
    wire = ""
    uses_rollout = True
    needs_tokenizer = False

    kind = ""
    ids_route: tuple[str, str] = ("root", "")
    messages_target: str | None = None
    messages_route: tuple[str, str] = ("v1", "/chat/completions")
    mito_messages = False
    decode_locally = True
    sends_stop_ids = True
    body_template_kwargs = False
    sends_top_logprobs = False

    def __init__(self, session: Session) -> None:
        self.session = session

    def new_state(self) -> RolloutState:
        c = self.session
        if not self.uses_rollout:
            return RolloutState(None)
        cfg = c.config
        return RolloutState(
            Rollout(
                c.tokenizer,
                stop_token_ids=c.stop_token_ids,
                verify=c.verify,
                max_messages=cfg.max_rollout_messages,
                max_tokens=cfg.max_rollout_tokens,
            )
        )

    def ask_top_logprobs(self, k: int, sampling: dict[str, Any]) -> None:
        """Adds to ``sampling`` what makes this transport's server return ``k`` top logprobs
        per completion token, each naming its token id (default: vLLM's integer ``logprobs``).
        A transport whose wire cannot return them raises :class:`ConfigError`."""
        sampling["logprobs"] = k

    # -- the one flow -----------------------------------------------------------------------
    async def generate(self, state: RolloutState, args: GenerateArgs) -> Turn:
        """Run one turn of ``state``'s rollout on this transport: :meth:`plan`, :meth:`send`,
        :meth:`complete` (recorded)."""
        plan = await self.plan(state, args)
        raw = await self.send(state, plan)
        return Turn(self.complete(state, plan, raw, args.top_logprobs))

    async def plan(self, state: RolloutState, args: GenerateArgs) -> _core.Plan:
        """The turn's plan with its body (see :meth:`plan_turn`)."""
        return self.plan_turn(state, args, render_mito=True)

    def plan_turn(
        self, state: RolloutState, args: GenerateArgs, *, render_mito: bool
    ) -> _core.Plan:
        """Plan the turn with the local tokenizer and write its body, in one call."""
        rollout = state.rollout
        assert rollout is not None
        return rollout._plan_turn(
            args.messages,
            args.tools,
            args.chat_template_kwargs,
            render_mito=render_mito,
            **self.request(args),
        )

    def plan_body(
        self, state: RolloutState, plan: _core.Plan, args: GenerateArgs, **request: Any
    ) -> _core.Plan:
        """The body of a plan made otherwise (bridges tokenized remotely, a caller's planning):
        the same turn's plan carrying it. ``request`` overrides :meth:`request`'s values (e.g.
        ``mito_messages=True``: a MITO turn goes as messages even with local ids)."""
        rollout = state.rollout
        assert rollout is not None
        return rollout._plan_body(
            plan,
            args.messages,
            args.tools,
            args.chat_template_kwargs,
            **{**self.request(args), **request},
        )

    def plan_ids(
        self, prompt_ids: Sequence[int] | TokenIds, args: GenerateArgs, *, turn: int, tito: bool
    ) -> _core.Plan:
        """The plan of a turn whose prompt ids the caller chose (not a rollout), with its body
        (``_core.plan_ids``): never counted in the metrics, never recorded."""
        return _core.plan_ids(
            prompt_ids,
            args.messages,
            args.tools,
            args.chat_template_kwargs,
            turn=turn,
            tito=tito,
            **self.request(args),
        )

    async def send(self, state: RolloutState, plan: _core.Plan) -> bytes:
        """The length pre-flight of the ids the plan sends (or the local render of the messages
        it sends), then the POST of its body to its route; the response body."""
        n = plan.prompt_len
        if n is not None:
            await self.session.check_prompt_length(n, self.name)
        base, path = self.ids_route if plan.sends_ids else self.messages_route
        cfg = self.session.config
        url = (cfg.root_url if base == "root" else cfg.v1_url) + path
        return await self.session.post(url, plan.body, self.name, state.headers)  # type: ignore[arg-type]

    def complete(
        self,
        state: RolloutState,
        plan: _core.Plan,
        raw: bytes,
        top_logprobs: int | None = None,
        *,
        record: bool = True,
    ) -> _core.TurnData:
        """Parse, check and decode the response ``raw`` of ``plan``'s turn, in one call into
        Rust; with ``record`` (the Client) the turn is recorded in ``state``'s rollout and
        counted in the metrics, without it (a caller that keeps its turns itself, verifiers)
        nothing is recorded or counted (``plan.count()`` counts it)."""
        cfg = self.session.config
        tok = self.session.tokenizer  # read live: the vocabulary the ids are checked against
        if not record:
            return _core.complete_turn(
                plan,
                raw,
                wire=self.wire,
                transport=self.name,
                decode_locally=self.decode_locally,
                tokenizer=tok,
                top_logprobs=top_logprobs,
                vocab_size=tok.vocab_size if tok is not None else None,
                max_body_bytes=cfg.max_body_bytes,
                max_depth=cfg.max_json_depth,
            )
        rollout = state.rollout
        assert rollout is not None
        return rollout._complete_turn(
            plan,
            raw,
            wire=self.wire,
            transport=self.name,
            decode_locally=self.decode_locally,
            top_logprobs=top_logprobs,
            vocab_size=tok.vocab_size if tok is not None else None,
            max_body_bytes=cfg.max_body_bytes,
            max_depth=cfg.max_json_depth,
        )

    def request(self, args: GenerateArgs) -> dict[str, Any]:
        """What the body is written from, besides the conversation and the plan."""
        c = self.session
        tok = c.tokenizer
        return {
            "vocab_size": tok.vocab_size if tok is not None else None,
            "kind": self.kind,
            "model": c.model,
            "transport": self.name,
            "sampling": args.sampling,
            "max_tokens": args.max_tokens,
            "stop_token_ids": c.stop_token_ids if self.sends_stop_ids else None,
            "cache_salt": args.cache_salt,
            "priority": args.priority,
            "body_template_kwargs": self.body_template_kwargs,
            "top_logprobs": args.top_logprobs if self.sends_top_logprobs else None,
            "messages_target": self.messages_target,
            "mito_messages": self.mito_messages,
        }

    # -- shared steps ---------------------------------------------------------------------------
    async def check_length(self, prompt_ids: Sized | None) -> None:
        """The length pre-flight alone, for ids rendered locally but not sent (messages are)."""
        if prompt_ids is not None:
            await self.session.check_prompt_length(len(prompt_ids), self.name)

    async def post(self, state: RolloutState, url: str, body: bytes) -> bytes:
        """POST ``body`` with the conversation's headers (its routing key)."""
        return await self.session.post(url, body, self.name, state.headers)


def check_prompt_ids(ids: Sequence[int] | TokenIds, vocab_size: int, where: str) -> None:
    """Raise :class:`InvalidTokenIdError` if an id of ``ids`` is below 0 or at or above
    ``vocab_size``. The one check every token-in request goes through before it is written
    (the transports' :meth:`Transport.check_prompt`, verifiers' token paths): an id outside the
    vocabulary cannot come from fasttito's own rendering, but can from a caller's ids or a
    corrupt engine response recorded earlier, and SGLang 0.5.23 dies on one (docs/wire.md S)."""
    if isinstance(ids, TokenIds):
        top = ids.max()  # ids are u32 in Rust: never negative
        if top is None or top < vocab_size:
            return
        bad, pos = top, ids.index(top)
    else:
        if not ids:
            return
        lo, hi = min(ids), max(ids)
        if lo >= 0 and hi < vocab_size:
            return
        bad = lo if lo < 0 else hi
        pos = list(ids).index(bad)
    raise InvalidTokenIdError(
        f"{where}: prompt id {bad} at position {pos} is outside the tokenizer's vocabulary "
        f"(ids 0..{vocab_size - 1}); it was not sent (an engine may crash on it: SGLang exits "
        "on an out-of-range id). Check the ids given to fasttito (a caller's get_prompt_ids, a "
        "recorded turn) and that the tokenizer is the served model's",
        token_id=int(bad),
        position=pos,
        vocab_size=vocab_size,
    )
