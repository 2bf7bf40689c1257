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
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fasttito import _core
from fasttito.errors import ConfigError, FasttitoError

__all__ = [
    "DEFAULT_MAX_ROLLOUT_MESSAGES",
    "DEFAULT_MAX_ROLLOUT_TOKENS",
    "Rollout",
    "Sample",
    "TrajectoryError",
]

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

    __slots__ = (
        "_core",
        "_pending",
        "_stops",
        "_tokenizer",
        "_turns",
        "_warned",
    )

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
        # the limits are checked in Rust (RolloutLimitError), before anything is sent
        self._core = _core.Rollout(
            tokenizer,
            stop_token_ids=list(stop_token_ids) if stop_token_ids is not None else None,
            verify=verify,
            max_messages=max_messages,
            max_tokens=max_tokens,
        )
        self._warned = False
        self._tokenizer = tokenizer
        self._stops = (
            list(stop_token_ids)
            if stop_token_ids is not None
            else (list(tokenizer.stop_token_ids) if tokenizer is not None else None)
        )
        # what trajectories() needs of each recorded turn, by turn index
        self._turns: dict[int, _TurnLog] = {}
        self._pending: tuple[Any, Sequence[Any], Any, Any] | None = None

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

    @staticmethod
    def _messages(messages: Iterable[Any]) -> Sequence[Any]:
        # a list is the common case; isinstance against the Sequence ABC costs more than the check
        return messages if type(messages) is list or isinstance(messages, Sequence) else [*messages]

    def _note(self, plan: _core.Plan) -> _core.Plan:
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
        plan = self._note(
            self._core.prepare(messages, tools, chat_template_kwargs, render_mito=render_mito)
        )
        self._pending = (plan, messages, tools, chat_template_kwargs)
        return plan

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
        self._pending = (result, messages, tools, chat_template_kwargs)
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
        plan = self._note(
            self._core.finish(
                pending,
                list(full_ids) if full_ids is not None else None,
                list(base_ids) if base_ids is not None else None,
            )
        )
        if self._pending is not None and self._pending[0] is pending:
            self._pending = (plan, *self._pending[1:])
        return plan

    def record(
        self,
        plan: _core.Plan,
        completion_ids: Sequence[int],
        message: Any,
        finish_reason: str | None = None,
        prompt_ids: Sequence[int] | None = None,
        *,
        logprobs: Sequence[float] | None = None,
    ) -> None:
        """Record the turn of ``plan``: the sampled ids, the assistant message appended to the
        conversation, the finish reason, the engine's prompt ids if they are not the plan's
        (a MITO turn without a local render), and the engine's logprobs of the sampled ids (for
        :meth:`trajectories`; NaN where missing)."""
        # a TokenIds (what the transports pass) is shared, never copied; other sequences are
        # copied once, so the caller may reuse theirs
        completion = (
            completion_ids if isinstance(completion_ids, _core.TokenIds) else [*completion_ids]
        )
        if prompt_ids is not None and not isinstance(prompt_ids, _core.TokenIds):
            prompt_ids = [*prompt_ids]
        self._core.record(plan, completion, message, finish_reason, prompt_ids)
        if logprobs is not None and len(logprobs) != len(completion):
            logprobs = None
        self._log(plan, completion, logprobs, message, prompt_ids)

    def _log(
        self,
        plan: _core.Plan,
        completion: Sequence[int] | _core.TokenIds,
        logprobs: Sequence[float] | _core.TurnData | None,
        message: Any,
        engine_ids: Sequence[int] | _core.TokenIds | None,
    ) -> None:
        """What :meth:`trajectories` needs of the turn just recorded."""
        pending, self._pending = self._pending, None
        messages, tools, kwargs = (
            pending[1:] if pending is not None and pending[0] is plan else (None, None, None)
        )
        log = _TurnLog(plan, completion, logprobs, messages, tools, kwargs)
        log.message = message
        matched = self._turns.get(log.matched) if log.matched is not None else None
        if engine_ids is not None:  # the engine's ids, not the plan's: a sample of their own
            log.tito = False
            log.prompt = engine_ids
            log.reused = 0
        elif log.tito and matched is not None and messages is not None:
            log.tail = messages[matched.n_messages + 1 :]
        self._turns[plan.turn - 1] = log

    def _plan_turn(
        self,
        messages: Iterable[Any],
        tools: Sequence[Mapping[str, Any]] | None,
        chat_template_kwargs: Mapping[str, Any] | None,
        **request: Any,
    ) -> _core.Plan:
        """:meth:`prepare` and the turn's request body in one call into Rust (the transports'
        first step; ``request`` as ``_core.Rollout.plan_turn`` takes it)."""
        messages = self._messages(messages)
        plan = self._note(self._core.plan_turn(messages, tools, chat_template_kwargs, **request))
        self._pending = (plan, messages, tools, chat_template_kwargs)
        return plan

    def _plan_body(
        self,
        plan: _core.Plan,
        messages: Sequence[Any],
        tools: Sequence[Mapping[str, Any]] | None,
        chat_template_kwargs: Mapping[str, Any] | None,
        **request: Any,
    ) -> _core.Plan:
        """The body of a plan made by :meth:`begin`/:meth:`finish` (the same turn's plan,
        carrying its body)."""
        with_body = self._core.plan_body(plan, messages, tools, chat_template_kwargs, **request)
        if self._pending is not None and self._pending[0] is plan:
            self._pending = (with_body, *self._pending[1:])
        return with_body

    def _complete_turn(self, plan: _core.Plan, body: bytes, **parse: Any) -> _core.TurnData:
        """Parse, check, decode and record the response ``body`` of ``plan``'s turn in one call
        into Rust (the transports' last step; ``parse`` as ``_core.Rollout.complete`` takes
        it); the turn's data."""
        data = self._core.complete(plan, body, **parse)
        mismatch = data.prompt_mismatch
        if mismatch is not None:
            logger.warning(
                "%s: the server reports %d prompt ids, fasttito sent %d different ones; the "
                "turn is recorded with the server's",
                data.transport,
                mismatch[0],
                mismatch[1],
            )
        self._log(
            plan,
            data.completion_ids,
            data,
            data.message,
            data.prompt_ids if data.engine_prompt_ids else None,
        )
        return data

    def trajectory(self) -> Sample:
        """The conversation as one training sample (see :meth:`trajectories`); raises
        :class:`TrajectoryError` when a turn fell back to messages after the first, so the
        rollout is more than one sample."""
        samples = self.trajectories()
        if len(samples) != 1:
            raise TrajectoryError(
                f"this rollout is {len(samples)} samples: a turn after the first fell back to "
                "messages (its prompt was re-rendered, not the earlier ids verbatim); use "
                "rollout.trajectories() and train on each"
            )
        return samples[0]

    def trajectories(self) -> list[Sample]:
        """The recorded turns as training samples, in order. A TITO turn extends the sample of
        the turn it continues (its prompt is that turn's ids verbatim plus a bridge); a turn
        sent as messages (MITO: the first, and every fallback) starts a new one. In each sample
        ``loss_mask`` is 1 exactly on the ids the engine sampled (every turn's completion, stop
        tokens included) and 0 on the ids rendered for the prompt; ``logprobs`` are the engine's
        on the sampled ids, NaN elsewhere; ``message_indices`` name the message of the
        conversation each id belongs to (-1: the generation prompt, or unknown)."""
        if len(self._turns) != len(self):
            raise TrajectoryError(
                f"{len(self) - len(self._turns)} of {len(self)} turns were not recorded through "
                "Rollout.record (ingested trajectory steps carry no sample information)"
            )
        samples: list[Sample] = []
        where: list[tuple[int, int]] = []  # per turn: its sample, and the sample's length then
        for t in range(len(self)):
            log = self._turns[t]
            m = log.matched
            sample: Sample | None = None
            if log.tito and m is not None and m < len(where) and where[m][1] == log.reused:
                index, length = where[m]
                sample = samples[index]
                if len(sample) != length:  # continues an earlier turn: a sample of its own
                    sample = sample._prefix(length)
                    samples.append(sample)
                sample._extend(log.new_ids, 0, None, self._bridge_indices(log, m))
            else:
                if log.new_ids is None:
                    raise TrajectoryError(
                        f"turn {t + 1} was sent as messages without local prompt ids (the engine "
                        "rendered it and reported none): its sample is unknown"
                    )
                sample = Sample()
                samples.append(sample)
                sample._extend(log.new_ids, 0, None, self._prompt_indices(log))
            sample._extend(log.completion, 1, log.logprobs, [log.n_messages] * len(log.completion))
            where.append((samples.index(sample), len(sample)))
        return samples

    def _prompt_indices(self, log: _TurnLog) -> list[int]:
        n = len(log.new_ids or ())
        if self._tokenizer is None or log.messages is None:
            return [-1] * n
        try:
            ids, indices, _ = _core.attribute(
                self._tokenizer, log.messages, log.tools, True, log.kwargs, self._stops
            )
        except FasttitoError:
            return [-1] * n
        return indices if ids == log.new_ids else [-1] * n

    def _bridge_indices(self, log: _TurnLog, matched: int) -> list[int]:
        n = len(log.new_ids or ())
        prev = self._turns[matched]
        if self._tokenizer is None or log.tail is None or not prev.completion:
            return [-1] * n
        calls = _field(prev.message, "tool_calls") or []
        names = {}
        for call in calls:
            function = _field(call, "function")
            name = _field(function, "name") if function is not None else _field(call, "name")
            if _field(call, "id") and name:
                names[str(_field(call, "id"))] = str(name)
        try:
            bridge, _, full, offset = _core.lone_bridge(
                self._tokenizer, prev.completion[-1], log.tail, log.tools, log.kwargs, names
            )
            if bridge != log.new_ids or full is None:
                return [-1] * n
            _, indices, _ = _core.attribute(
                self._tokenizer, full, log.tools, True, log.kwargs, self._stops
            )
        except FasttitoError:
            return [-1] * n
        first = prev.n_messages + 1  # the first new message; the dummy stands for the reply
        return [-1 if i < 0 else first + i - 1 for i in indices[offset:]]


def _field(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


class TrajectoryError(FasttitoError, ValueError):
    """A rollout's turns do not make the training sample asked for (see
    :meth:`Rollout.trajectories`)."""


class _TurnLog:
    """What :meth:`Rollout.trajectories` needs of one recorded turn: the ids it added (the
    bridge of a TITO turn, the whole prompt of a MITO one), its completion and logprobs, and the
    messages to attribute them."""

    __slots__ = (
        "_logprobs",
        "completion",
        "kwargs",
        "matched",
        "message",
        "messages",
        "n_messages",
        "prompt",
        "reused",
        "tail",
        "tito",
        "tools",
    )

    def __init__(
        self,
        plan: _core.Plan,
        completion: Sequence[int] | _core.TokenIds,
        logprobs: Sequence[float] | _core.TurnData | None,
        messages: Sequence[Any] | None,
        tools: Any,
        kwargs: Any,
    ) -> None:
        self.tito = plan.mode == "tito"
        # the index of the continued turn (plan.matched_turn counts from 1)
        matched = plan.matched_turn
        self.matched = matched - 1 if matched is not None else None
        self.reused = plan.tokens_reused if self.tito else 0
        # the turn's prompt ids (a TokenIds view, shared with the plan): the ids it added are
        # those after the reused ones (new_ids), read when a sample is built
        self.prompt: Sequence[int] | _core.TokenIds | None = plan.prompt_ids
        self.completion = completion
        self._logprobs = logprobs
        self.n_messages = len(messages) if messages is not None else -1
        # a MITO turn keeps its messages (to attribute its prompt), a TITO turn its tail
        self.messages = list(messages) if messages is not None and not self.tito else None
        self.tail: Sequence[Any] | None = None
        self.tools = tools
        self.kwargs = kwargs
        self.message: Any = None

    @property
    def new_ids(self) -> Sequence[int] | _core.TokenIds | None:
        """The ids this turn added: the bridge of a TITO turn, the whole prompt otherwise."""
        ids = self.prompt
        if ids is None:
            return None
        return ids[self.reused :] if self.reused else ids

    @property
    def logprobs(self) -> Sequence[float] | None:
        lp = self._logprobs
        if isinstance(lp, _core.TurnData):
            return lp.completion_logprobs
        return lp


class Sample:
    """One training sample: ``token_ids`` (uint32), ``loss_mask`` (uint8), ``logprobs``
    (float32) and ``message_indices`` (int32), each an :class:`array.array` of the same length,
    so ``numpy.frombuffer(sample.loss_mask, numpy.uint8)`` and ``torch.frombuffer(...)`` read it
    without a copy."""

    __slots__ = ("logprobs", "loss_mask", "message_indices", "token_ids")

    def __init__(self) -> None:
        self.token_ids = array("I")
        self.loss_mask = array("B")
        self.logprobs = array("f")
        self.message_indices = array("i")

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        return f"Sample(tokens={len(self)}, sampled={sum(self.loss_mask)})"

    def _extend(
        self,
        ids: Sequence[int] | _core.TokenIds | None,
        mask: int,
        logprobs: Sequence[float] | None,
        indices: Sequence[int],
    ) -> None:
        ids = ids or []
        n = len(ids)
        self.token_ids.extend(ids)
        self.loss_mask.extend(bytes([mask]) * n)
        if logprobs is None:
            self.logprobs.extend([math.nan] * n)
        else:
            self.logprobs.extend(logprobs)
        self.message_indices.extend(indices)

    def _prefix(self, n: int) -> Sample:
        out = Sample()
        out.token_ids = self.token_ids[:n]
        out.loss_mask = self.loss_mask[:n]
        out.logprobs = self.logprobs[:n]
        out.message_indices = self.message_indices[:n]
        return out
