"""What every transport shares: the turn result (:class:`Turn`), one call's arguments, and the
base class with the steps common to the token transports (length check, record, message)."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fasttito import _core
from fasttito.errors import InvalidTokenIdError, ResponseParseError
from fasttito.rollout import Rollout
from fasttito.tokens import TokenIds
from fasttito.transports._decode import decode_completion

if TYPE_CHECKING:
    from fasttito.transports._session import Session

__all__ = [
    "GenerateArgs",
    "RolloutState",
    "Transport",
    "Turn",
    "assistant_message",
    "check_prompt_ids",
    "ids_arg",
]

logger = logging.getLogger("fasttito")


@dataclass(frozen=True, slots=True, eq=False)
class Turn:
    """One generated turn.

    ``prompt_ids`` are the ids the engine generated from (the server's when it reports them,
    else the ids fasttito sent); ``completion_ids`` the sampled ids (ending in the stop token
    unless truncated); ``completion_logprobs`` are 1:1 with them (NaN where the server sent
    ``null``) or None when the server sent none. ``mode`` is ``"tito"`` or ``"mito"`` and
    ``fallback_reason`` says why a turn went MITO. :meth:`message` is the assistant message to
    append to the conversation (the very dict recorded in the rollout). On a TITO turn
    ``tokens_reused`` prompt ids were copied verbatim from the matched turn and ``bridge_tokens``
    rendered for the new messages (``tokens_reused + bridge_tokens == len(prompt_ids)``); both
    are 0 on a MITO turn and None on the ``chat`` transport, which keeps no rollout.
    ``completion_top_logprobs`` are, per completion id, the engine's top alternatives as
    ``(token id, logprob)`` pairs when asked for (``top_logprobs=k``) and sent, else None.
    ``cached_tokens`` is how many prompt tokens the engine found in its prefix cache, on wires
    that report it (SGLang ``meta_info.cached_tokens``; vLLM/Dynamo
    ``usage.prompt_tokens_details.cached_tokens``), else None.
    """

    prompt_ids: TokenIds | None
    completion_ids: TokenIds
    completion_logprobs: list[float] | None
    content: str | None
    reasoning_content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str | None
    mode: str
    fallback_reason: str | None
    transport: str
    turn: int
    stop_reason: Any = None
    usage: dict[str, Any] | None = None
    response_id: str | None = None
    routed_experts: bytes | None = field(default=None, repr=False)
    null_logprobs: int = 0
    unparsed_tool_calls: int = 0
    tokens_reused: int | None = None
    bridge_tokens: int | None = None
    completion_top_logprobs: list[list[tuple[int, float]]] | None = field(default=None, repr=False)
    cached_tokens: int | None = None
    _message: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_truncated(self) -> bool:
        """The turn was cut by the length limit (no stop token at its end)."""
        return self.finish_reason == "length"

    def message(self) -> dict[str, Any]:
        """The assistant message (OpenAI shape) to append to the conversation. It is the dict
        recorded in the rollout: append it as is (a rebuilt equal dict also matches)."""
        return self._message

    def __repr__(self) -> str:
        n = len(self.prompt_ids) if self.prompt_ids is not None else None
        return (
            f"Turn(turn={self.turn}, mode={self.mode!r}, fallback_reason={self.fallback_reason!r}, "
            f"prompt_ids=<{n} ids>, completion_ids=<{len(self.completion_ids)} ids>, "
            f"finish_reason={self.finish_reason!r}, content={self.content!r}, "
            f"tool_calls={len(self.tool_calls)})"
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


class Transport(abc.ABC):
    """Base of the transports. ``name`` is the transport id; ``wire`` the response shape."""

    name = ""
    wire = ""
    uses_rollout = True
    needs_tokenizer = False

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

    @abc.abstractmethod
    async def generate(self, state: RolloutState, args: GenerateArgs) -> Turn:
        """Run one turn of ``state``'s rollout on this transport."""

    def ask_top_logprobs(self, k: int, sampling: dict[str, Any]) -> None:
        """Adds to ``sampling`` what makes this transport's server return ``k`` top logprobs
        per completion token, each naming its token id (default: vLLM's integer ``logprobs``).
        A transport whose wire cannot return them raises :class:`ConfigError`."""
        sampling["logprobs"] = k

    @staticmethod
    def top_logprobs_of(parsed: Any, args: GenerateArgs, name: str) -> Any:
        """The parsed top logprobs when the call asked for them (else None); a response without
        them, though asked, is a :class:`ResponseParseError`."""
        if not args.top_logprobs:
            return None
        top = parsed.completion_top_logprobs
        if top is None:
            raise ResponseParseError(
                f"{name}: asked for top_logprobs={args.top_logprobs}, the response has none that "
                "name their token ids; the server ignored the request (check its max_logprobs "
                "setting) or labels them by text only"
            )
        return top

    # -- shared steps ---------------------------------------------------------------------------
    async def check_length(self, prompt_ids: Sized | None) -> None:
        """The length pre-flight alone, for ids rendered locally but not sent (messages are)."""
        if prompt_ids is not None:
            await self.session.check_prompt_length(len(prompt_ids), self.name)

    async def check_prompt(self, prompt_ids: Sized | None) -> None:
        """Every token transport calls this before it writes a body: the ids must lie in the
        tokenizer's vocabulary (:class:`InvalidTokenIdError`; checked when the Client has a
        tokenizer) and the prompt must fit the server's length (:class:`OverlongPromptError`)."""
        if prompt_ids is None:
            return
        tokenizer = self.session.tokenizer
        if tokenizer is not None:
            check_prompt_ids(prompt_ids, tokenizer.vocab_size, self.name)  # type: ignore[arg-type]
        await self.session.check_prompt_length(len(prompt_ids), self.name)

    async def post(self, state: RolloutState, url: str, body: bytes) -> bytes:
        """POST ``body`` with the conversation's headers (its routing key)."""
        return await self.session.post(url, body, self.name, state.headers)

    def parse(self, body: bytes) -> Any:
        cfg = self.session.config
        return _core.parse_response(
            body, self.wire, max_body_bytes=cfg.max_body_bytes, max_depth=cfg.max_json_depth
        )

    def finish_turn(
        self,
        state: RolloutState,
        plan: _core.Plan,
        parsed: Any,
        *,
        decode_locally: bool,
        args: GenerateArgs | None = None,
    ) -> Turn:
        """Build the message (locally decoded when asked), record the turn in the rollout with
        the engine's ids, and return the :class:`Turn`."""
        completion_ids = parsed.completion_ids
        logprobs = parsed.completion_logprobs
        top_logprobs = self.top_logprobs_of(parsed, args, self.name) if args is not None else None
        if logprobs is not None and len(logprobs) != len(completion_ids):  # the parser's invariant
            raise ResponseParseError(
                f"{self.name}: {len(logprobs)} logprobs for {len(completion_ids)} completion ids"
            )
        tokenizer = self.session.tokenizer
        if tokenizer is not None:
            # An id outside the vocabulary would be recorded and re-sent next turn: a corrupt
            # engine response must stop here, typed, not poison the rollout.
            for what, ids in (("completion", completion_ids), ("prompt", parsed.prompt_ids)):
                top = ids.max() if ids is not None else None
                if top is not None and top >= tokenizer.vocab_size:
                    raise ResponseParseError(
                        f"{self.name}: the response's {what} ids hold {top}, outside the "
                        f"vocabulary of {tokenizer.vocab_size} ids; the engine serves another "
                        "model or sent corrupt ids"
                    )
        content, reasoning, tool_calls = (
            parsed.content,
            parsed.reasoning_content,
            list(parsed.tool_calls),
        )
        finish = parsed.finish_reason
        unparsed = 0
        message: dict[str, Any] | None = None
        if decode_locally and self.session.tokenizer is not None and not tool_calls:
            # ids only (or raw text without a tool parser): decode per model family; the
            # message is the one the template renders back to these ids
            dec = decode_completion(self.session.tokenizer, completion_ids)
            content, reasoning, tool_calls = dec.content, dec.reasoning_content, dec.tool_calls
            unparsed = dec.unparsed_tool_calls
            message = dec.message
            if dec.finish_reason_hint == "tool_calls" and finish == "stop":
                finish = "tool_calls"  # generate never says tool_calls (docs/wire.md B.2)
        if message is None:
            message = assistant_message(content, reasoning, tool_calls)

        # prompt ids: the server's when it reports them, else the plan's
        plan_ids = plan.prompt_ids
        server_ids = parsed.prompt_ids
        record_ids = None
        prompt_ids: TokenIds | None = plan_ids
        if server_ids is not None:
            if plan_ids is None:
                record_ids = server_ids
                prompt_ids = server_ids
            elif not (len(server_ids) == len(plan_ids) and server_ids == plan_ids):
                logger.warning(
                    "%s: the server reports %d prompt ids, fasttito sent %d different ones; the "
                    "turn is recorded with the server's",
                    self.name,
                    len(server_ids),
                    len(plan_ids),
                )
                record_ids = server_ids
                prompt_ids = server_ids
        elif plan_ids is None:
            raise ResponseParseError(
                f"{self.name}: the response has no prompt token ids and none were rendered "
                "locally, so the turn cannot be recorded for token-in reuse; ask the server for "
                "them (vLLM: return_token_ids) or give the Client a tokenizer"
            )
        assert state.rollout is not None
        state.rollout.record(
            plan, completion_ids, message, finish, prompt_ids=record_ids, logprobs=logprobs
        )
        return Turn(
            prompt_ids=prompt_ids,
            completion_ids=completion_ids,
            completion_logprobs=logprobs,
            content=content,
            reasoning_content=reasoning,
            tool_calls=tool_calls,
            finish_reason=finish,
            mode=plan.mode,
            fallback_reason=plan.fallback_reason,
            transport=self.name,
            turn=len(state.turns) + 1,
            stop_reason=parsed.stop_reason,
            usage=parsed.usage,
            response_id=parsed.response_id,
            routed_experts=parsed.routed_experts,
            cached_tokens=parsed.cached_tokens,
            null_logprobs=parsed.null_logprobs,
            unparsed_tool_calls=unparsed,
            tokens_reused=plan.tokens_reused,
            bridge_tokens=plan.bridge_tokens,
            completion_top_logprobs=top_logprobs,
            _message=message,
        )


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


def ids_arg(ids: TokenIds | None) -> Sequence[int] | None:
    """``TokenIds`` as the ``token_ids`` argument of ``_core.request_body`` (it reads the
    buffer; the stub types the argument as a sequence)."""
    return ids  # type: ignore[return-value]
