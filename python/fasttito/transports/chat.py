"""``chat``: plain ``POST /v1/chat/completions`` with the messages every turn (MITO), for any
OpenAI-compatible server. ``chat_target`` (Client setting) says which keys the body may carry:
``"vllm"`` (default; ``return_token_ids``: the turns carry ids and logprobs; ``cache_salt`` and
``priority`` at the root), ``"dynamo"`` (``nvext`` with ``engine_data``; the default when ``auto``
found Dynamo) or ``"openai"`` (no vLLM-only key: for strict OpenAI servers). No token-in reuse:
every turn has ``mode == "mito"`` and ``fallback_reason == "chat_transport"``."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fasttito import _core
from fasttito.errors import ConfigError, FasttitoError, ResponseParseError
from fasttito.tokens import TokenIds
from fasttito.transports._base import GenerateArgs, RolloutState, Transport, Turn

__all__ = ["ChatTransport"]

REASON = "chat_transport"
logger = logging.getLogger("fasttito")


class ChatTransport(Transport):
    name = "chat"
    uses_rollout = False
    _warned = False

    def ask_top_logprobs(self, k: int, sampling: dict[str, Any]) -> None:
        if self.session.chat_target != "vllm":
            raise ConfigError(
                f"top_logprobs={k}: the chat transport returns top logprobs by token id only "
                f"from vLLM (chat_target='vllm', which asks for return_tokens_as_token_ids); "
                f"chat_target={self.session.chat_target!r} labels them by text"
            )
        sampling["logprobs"] = k
        sampling["return_tokens_as_token_ids"] = True

    async def _check_length_locally(self, args: GenerateArgs) -> None:
        """With a tokenizer and a server that reports its context length, the prompt is rendered
        locally to raise :class:`OverlongPromptError` before sending (a template that fails
        here is left for the server to report)."""
        c = self.session
        if c.tokenizer is None or await c.prompt_limit() is None:
            return
        try:
            ids = c.tokenizer.apply_chat_template(
                args.messages,
                tools=args.tools,
                add_generation_prompt=True,
                **(args.chat_template_kwargs or {}),
            )
        except FasttitoError as exc:
            logger.debug("chat: local render for the length check failed: %s", exc)
            return
        await self.check_length(ids)

    async def generate(self, state: RolloutState, args: GenerateArgs) -> Turn:
        c = self.session
        target = c.chat_target
        if (
            target == "openai"
            and (args.cache_salt or args.priority is not None)
            and not self._warned
        ):
            self._warned = True
            logger.warning(
                "chat transport with chat_target='openai': cache_salt and priority are not sent "
                "(use chat_target='vllm' for servers that take them)"
            )
        await self._check_length_locally(args)
        body = _core.request_body(
            "chat",
            c.model,
            messages=args.messages,
            tools=args.tools,
            sampling=args.sampling,
            max_tokens=args.max_tokens,
            cache_salt=args.cache_salt,
            priority=args.priority,
            chat_template_kwargs=args.chat_template_kwargs,
            stop_token_ids=c.stop_token_ids if target == "dynamo" else None,
            target=target,
        )
        raw = await self.post(state, c.config.v1_url + "/chat/completions", body)
        if target == "openai":
            return Turn(
                mode="mito",
                fallback_reason=REASON,
                transport=self.name,
                turn=len(state.turns) + 1,
                **_parse_openai(raw, self.name),
            )
        return Turn(
            _core.parse_turn(
                raw,
                "dynamo" if target == "dynamo" else "vllm-chat",
                transport=self.name,
                turn=len(state.turns) + 1,
                top_logprobs=args.top_logprobs,
                max_body_bytes=c.config.max_body_bytes,
            )
        )


def _parse_openai(raw: bytes, transport: str) -> dict[str, Any]:
    """A plain OpenAI chat completion; ids and logprobs only where the server sent them."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ResponseParseError(
            f"{transport}: the response is not JSON ({exc}); expected an OpenAI chat completion"
        ) from None
    try:
        choice = doc["choices"][0]
        msg = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ResponseParseError(
            f"{transport}: the response has no choices[0]; expected an OpenAI chat completion"
        ) from None
    ids = choice.get("token_ids")
    if ids is not None and not (
        isinstance(ids, list) and all(type(t) is int and 0 <= t < 1 << 32 for t in ids)
    ):
        raise ResponseParseError(f"{transport}: choices[0].token_ids is not a list of token ids")
    completion_ids = TokenIds(ids or [])
    logprobs = None
    content_lp = (
        (choice.get("logprobs") or {}).get("content")
        if isinstance(choice.get("logprobs"), dict)
        else None
    )
    if isinstance(content_lp, list):
        logprobs = [
            float(e["logprob"])
            if isinstance(e, dict) and isinstance(e.get("logprob"), (int, float))
            else math.nan
            for e in content_lp
        ]
        if ids is not None and len(logprobs) != len(ids):
            raise ResponseParseError(
                f"{transport}: {len(logprobs)} logprobs for {len(ids)} token ids; they must be 1:1"
            )
    prompt = doc.get("prompt_token_ids")
    tool_calls = [tc for tc in msg.get("tool_calls") or [] if isinstance(tc, dict)]
    finish = choice.get("finish_reason")
    if tool_calls and finish == "stop":
        finish = "tool_calls"
    reasoning = msg.get("reasoning_content")
    if reasoning is None:
        reasoning = msg.get("reasoning")
    return {
        "prompt_ids": TokenIds(prompt) if isinstance(prompt, list) else None,
        "completion_ids": completion_ids,
        "completion_logprobs": logprobs,
        "content": msg.get("content"),
        "reasoning_content": reasoning,
        "tool_calls": tool_calls,
        "finish_reason": finish,
        "stop_reason": choice.get("stop_reason"),
        "usage": doc.get("usage"),
        "response_id": doc.get("id"),
        "routed_experts": None,
        "null_logprobs": sum(1 for v in logprobs or () if math.isnan(v)),
    }
