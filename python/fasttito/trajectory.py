"""TITO over verifiers-style trajectories, without converting anything.

verifiers keeps a rollout in ``state["trajectory"]``: a list of steps, each a mapping (or
object) with ``prompt`` and ``completion`` message lists, ``tokens`` (``prompt_ids``,
``completion_ids``, ``is_truncated``; ``None`` when the engine returned no ids) and
``response``. :class:`TrajectoryRollouts` keeps one Rust rollout per trajectory list (by
identity, holding a reference so the id cannot be reused), ingests each new step once, and plans
the next prompt: the cost of a turn does not grow with the number of earlier steps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from fasttito import _core
from fasttito.rollout import Rollout

__all__ = ["TrajectoryRollouts"]


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _is_truncated(step: Any, tokens: Any) -> bool:
    if _get(tokens, "is_truncated"):
        return True
    message = _get(_get(step, "response"), "message")
    return bool(_get(message, "is_truncated"))


class _Entry:
    __slots__ = ("ingested", "rollout", "trajectory")

    def __init__(self, trajectory: list[Any], rollout: Rollout) -> None:
        self.trajectory = trajectory
        self.rollout = rollout
        self.ingested = 0


class TrajectoryRollouts:
    """Plans TITO prompts for verifiers trajectories.

    Args:
        tokenizer: the local tokenizer for bridges, or ``None`` for a remote one
            (:meth:`begin` then ``rollout.finish``).
        max_rollouts: how many trajectories to remember (least recently used are dropped).
    """

    def __init__(self, tokenizer: _core.Tokenizer | None, *, max_rollouts: int = 4096) -> None:
        self._tokenizer = tokenizer
        self._max = max_rollouts
        self._entries: OrderedDict[int, _Entry] = OrderedDict()

    def rollout_for(
        self,
        trajectory: list[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> Rollout:
        """The rollout of ``trajectory``, with every step that carries tokens ingested."""
        key = id(trajectory)
        entry = self._entries.get(key)
        if entry is None or entry.trajectory is not trajectory or entry.ingested > len(trajectory):
            entry = _Entry(trajectory, Rollout(self._tokenizer))
            self._entries[key] = entry
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        for step in trajectory[entry.ingested :]:
            tokens = _get(step, "tokens")
            if tokens is not None:
                entry.rollout._core.ingest(
                    _get(step, "prompt") or [],
                    _get(step, "completion") or [],
                    _get(tokens, "prompt_ids") or [],
                    _get(tokens, "completion_ids") or [],
                    _is_truncated(step, tokens),
                    tools,
                    chat_template_kwargs,
                )
            entry.ingested += 1
        return entry.rollout

    def prompt_ids(
        self,
        trajectory: list[Any],
        prompt_messages: Sequence[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> _core.Plan:
        """Plan the prompt for ``prompt_messages`` after ``trajectory``'s steps (local
        tokenizer). ``plan.prompt_ids`` is ``None`` when the turn must go as messages."""
        rollout = self.rollout_for(trajectory, tools, chat_template_kwargs)
        return rollout.prepare(prompt_messages, tools, chat_template_kwargs, render_mito=False)
