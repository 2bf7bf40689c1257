"""``chat``: plain ``POST /v1/chat/completions`` with the messages every turn (MITO), for any
OpenAI-compatible server. ``chat_target`` (Client setting) says which keys the body may carry:
``"vllm"`` (default; ``return_token_ids``: the turns carry ids and logprobs; ``cache_salt`` and
``priority`` at the root), ``"dynamo"`` (``nvext`` with ``engine_data``; the default when ``auto``
found Dynamo) or ``"openai"`` (no vLLM-only key: for strict OpenAI servers). No token-in reuse:
every turn has ``mode == "mito"`` and ``fallback_reason == "chat_transport"``. Every target's
answer is parsed in Rust (``_core.parse_turn``); what each reads and refuses is in
``docs/wire.md`` A.4."""

from __future__ import annotations

import logging
from typing import Any

from fasttito import _core
from fasttito.errors import ConfigError, FasttitoError
from fasttito.transports._base import GenerateArgs, RolloutState, Transport, Turn

__all__ = ["ChatTransport"]

# The response wire of each target, all parsed in Rust (docs/wire.md A.4): vLLM must send the
# ids it was asked for (``return_token_ids``), Dynamo answers with ``nvext``, and any other
# OpenAI-compatible server is read with ids and logprobs only where it sent them.
WIRES = {"vllm": "vllm-chat", "dynamo": "dynamo", "openai": "chat"}
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
        return Turn(
            _core.parse_turn(
                raw,
                WIRES[target],
                transport=self.name,
                turn=len(state.turns) + 1,
                top_logprobs=args.top_logprobs,
                max_body_bytes=c.config.max_body_bytes,
                max_depth=c.config.max_json_depth,
            )
        )
