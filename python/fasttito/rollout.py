"""One multi-turn conversation's TITO state, usable without HTTP.

The work is in Rust (``fasttito._core.Rollout``); this layer adds the policy: a fallback to
messages past turn 1 is logged once per rollout at WARNING (every fallback is counted in
``fasttito.metrics()`` either way).

>>> import fasttito
>>> tok = fasttito.Tokenizer.from_dir("models/qwen2.5")
>>> rollout = fasttito.Rollout(tok)
>>> plan = rollout.prepare([{"role": "user", "content": "hi"}])
>>> plan.mode, plan.fallback_reason
('mito', 'first_turn')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fasttito import _core
from fasttito.errors import ConfigError, RolloutLimitError

__all__ = ["DEFAULT_MAX_ROLLOUT_MESSAGES", "DEFAULT_MAX_ROLLOUT_TOKENS", "Rollout"]

#: Default bound on the messages of one conversation (an agent loop that never ends stops here).
DEFAULT_MAX_ROLLOUT_MESSAGES = 10_000
#: Default bound on the prompt ids of one turn (8x the longest context windows served today).
DEFAULT_MAX_ROLLOUT_TOKENS = 8 << 20

logger = logging.getLogger("fasttito")


class Rollout:
    """The turns of one conversation, and the plan of its next turn.

    Args:
        tokenizer: the local tokenizer that renders bridges (and full prompts of MITO turns).
            Without one, use :meth:`begin`/:meth:`finish` with a remote tokenizer.
        stop_token_ids: the ids a turn may end on; default: the tokenizer's.
        verify: re-render every TITO prompt in full and attach the comparison to the plan
            (``plan.verify``); costs a full render per turn, so it is off by default.
        max_messages: the most messages a conversation may have; a longer one raises
            :class:`RolloutLimitError` (``limit="max_rollout_messages"``) before it is planned.
        max_tokens: the most prompt ids a turn may have; a plan with more raises
            :class:`RolloutLimitError` (``limit="max_rollout_tokens"``), so nothing is sent.
    """

    __slots__ = ("_core", "_max_messages", "_max_tokens", "_warned")

    def __init__(
        self,
        tokenizer: _core.Tokenizer | None = None,
        *,
        stop_token_ids: Sequence[int] | None = None,
        verify: bool = False,
        max_messages: int = DEFAULT_MAX_ROLLOUT_MESSAGES,
        max_tokens: int = DEFAULT_MAX_ROLLOUT_TOKENS,
    ) -> None:
        for name, value in (("max_messages", max_messages), ("max_tokens", max_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self._max_messages = max_messages
        self._max_tokens = max_tokens
        self._core = _core.Rollout(
            tokenizer,
            stop_token_ids=list(stop_token_ids) if stop_token_ids is not None else None,
            verify=verify,
        )
        self._warned = False

    def __len__(self) -> int:
        return len(self._core)

    @property
    def held_ids(self) -> int:
        """Token ids this rollout holds for its recorded turns. A turn keeps the ids it reused
        from an earlier turn shared with that turn, not copied, so this grows with the
        rollout's tokens (about the last turn's prompt + completion for a TITO rollout), not
        with turns times prompt length."""
        return self._core.held_ids

    @property
    def cached_messages(self) -> int:
        """Messages this rollout keeps converted and hashed for reuse: those the last two turns
        used. A message object (or one rebuilt around the same strings) seen on the previous
        turn is not converted again; the cache stays about twice the conversation's length
        even when every turn brings new message objects."""
        return self._core.cached_messages

    def _messages(self, messages: Iterable[Any]) -> Sequence[Any]:
        # a list is the common case; isinstance against the Sequence ABC costs more than the check
        seq = messages if type(messages) is list or isinstance(messages, Sequence) else [*messages]
        if len(seq) > self._max_messages:
            raise RolloutLimitError(
                f"the conversation has {len(seq)} messages, over max_rollout_messages="
                f"{self._max_messages}; end the rollout, or raise max_rollout_messages (Client) / "
                "max_messages (Rollout) if conversations this long are intended",
                limit="max_rollout_messages",
                value=len(seq),
                maximum=self._max_messages,
            )
        return seq

    def _check_tokens(self, n: int) -> None:
        if n > self._max_tokens:
            raise RolloutLimitError(
                f"the turn's prompt has {n} token ids, over max_rollout_tokens={self._max_tokens}; "
                "it was not sent. End the rollout, or raise max_rollout_tokens (Client) / "
                "max_tokens (Rollout) if prompts this long are intended",
                limit="max_rollout_tokens",
                value=n,
                maximum=self._max_tokens,
            )

    def _note(self, plan: _core.Plan) -> _core.Plan:
        ids = plan.prompt_ids
        if ids is not None:
            self._check_tokens(len(ids))
        if plan.fallback_reason is not None and plan.turn > 1 and not self._warned:
            self._warned = True
            logger.warning(
                "TITO fell back to messages on turn %d: %s (logged once per rollout; counted in "
                "fasttito.metrics())",
                plan.turn,
                plan.fallback_reason,
            )
        if plan.verify is not None and not plan.verify["identical"]:
            logger.warning(
                "verify: stitched ids differ from a full re-render at index %s: stitched %r, "
                "re-rendered %r (expected for templates that rewrite history)",
                plan.verify["first_diff"],
                plan.verify["stitched_context"],
                plan.verify["rendered_context"],
            )
        return plan

    def prepare(
        self,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        *,
        render_mito: bool = True,
    ) -> _core.Plan:
        """Plan the next turn for the whole conversation ``messages`` (dicts or Pydantic models)."""
        messages = self._messages(messages)
        return self._note(
            self._core.prepare(messages, tools, chat_template_kwargs, render_mito=render_mito)
        )

    def begin(
        self,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> _core.Plan | _core.PendingBridge:
        """Like :meth:`prepare`, for a remote tokenizer: returns a MITO plan, or a pending bridge
        whose ``full_messages`` (with the generation prompt) and ``base_messages`` (without) the
        caller tokenizes, then passes to :meth:`finish`."""
        messages = self._messages(messages)
        result = self._core.begin(messages, tools, chat_template_kwargs)
        if isinstance(result, _core.Plan):
            return self._note(result)
        return result

    def finish(
        self,
        pending: _core.PendingBridge,
        full_ids: Sequence[int] | None,
        base_ids: Sequence[int] | None,
    ) -> _core.Plan:
        """Complete a pending bridge; ``None`` ids mean tokenization failed (the turn goes MITO)."""
        return self._note(
            self._core.finish(
                pending,
                list(full_ids) if full_ids is not None else None,
                list(base_ids) if base_ids is not None else None,
            )
        )

    def record(
        self,
        plan: _core.Plan,
        completion_ids: Sequence[int],
        message: Any,
        finish_reason: str | None = None,
        prompt_ids: Sequence[int] | None = None,
    ) -> None:
        """Record the turn of ``plan``: the sampled ids, the assistant message appended to the
        conversation, the finish reason, and the engine's prompt ids if they are not the plan's
        (a MITO turn without a local render)."""
        self._core.record(
            plan,
            list(completion_ids),
            message,
            finish_reason,
            list(prompt_ids) if prompt_ids is not None else None,
        )
