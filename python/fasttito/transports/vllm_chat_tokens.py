"""``vllm-chat-tokens``: vLLM + prime-rl (docs/wire.md A). Turn 1 and fallbacks: ``POST
/v1/chat/completions`` with ``return_token_ids``; TITO turns: ``POST /v1/chat/completions/tokens``
with ``tokens`` (the messages are still sent: the server validates them). Bridges are rendered
with the local tokenizer when the Client has one, else by two ``POST {root}/tokenize`` calls per
turn (docs/wire.md B.1, E.2). The server parses tool calls and reasoning itself."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fasttito import _core
from fasttito.errors import ServerError
from fasttito.transports._base import GenerateArgs, RolloutState, Transport

__all__ = ["VllmChatTokensTransport"]

logger = logging.getLogger("fasttito")


class VllmChatTokensTransport(Transport):
    name = "vllm-chat-tokens"
    wire = "vllm-chat"
    kind = "chat-tokens"
    ids_route = ("v1", "/chat/completions/tokens")
    messages_target = "vllm"
    mito_messages = True
    decode_locally = False
    sends_stop_ids = False
    body_template_kwargs = True

    def ask_top_logprobs(self, k: int, sampling: dict[str, Any]) -> None:
        # the chat routes label tokens by text unless asked for `token_id:N` labels
        sampling["logprobs"] = k
        sampling["return_tokens_as_token_ids"] = True

    async def plan(self, state: RolloutState, args: GenerateArgs) -> _core.Plan:
        c = self.session
        rollout = state.rollout
        assert rollout is not None
        if c.tokenizer is not None:
            # a turn sent as messages is rendered locally only to check its length before
            # sending (when the server reports one): the server renders it again
            render = await c.prompt_limit() is not None
            return self.plan_turn(state, args, render_mito=render)
        begun = rollout.begin(args.messages, args.tools, args.chat_template_kwargs)
        if isinstance(begun, _core.Plan):
            plan = begun
        else:
            full = await self._tokenize(state, begun.full_messages, args, generation_prompt=True)
            base = None
            if full is not None:
                base = await self._tokenize(
                    state, begun.base_messages, args, generation_prompt=False
                )
            plan = rollout.finish(begun, full, base)
        return self.plan_body(state, plan, args)

    async def _tokenize(
        self,
        state: RolloutState,
        messages: Sequence[Any],
        args: GenerateArgs,
        *,
        generation_prompt: bool,
    ) -> list[int] | None:
        """vLLM's chat ``/tokenize`` (docs/wire.md B.1); None when the server rejects the messages
        (the turn then falls back to messages, counted as ``tokenization_failed``)."""
        c = self.session
        req: dict[str, Any] = {"model": c.model, "messages": list(messages), "tools": args.tools}
        if not generation_prompt:
            req["add_generation_prompt"] = False
        if args.chat_template_kwargs:
            req["chat_template_kwargs"] = dict(args.chat_template_kwargs)
        body = json.dumps(req, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            raw = await self.post(state, c.config.root_url + "/tokenize", body)
        except ServerError as exc:
            if 400 <= exc.status_code < 500:
                logger.debug("%s: /tokenize rejected the bridge (%d)", self.name, exc.status_code)
                return None
            raise
        try:
            tokens = json.loads(raw)["tokens"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(tokens, list) or not all(type(t) is int and t >= 0 for t in tokens):
            return None
        return tokens
