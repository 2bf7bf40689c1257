"""``dynamo-nvext``: NVIDIA Dynamo ``POST /v1/chat/completions`` with a placeholder message and
the prompt as ``nvext.token_data`` (docs/wire.md C.1): stitched ids on TITO turns; on turn 1 and
fallbacks a full local render by default (``dynamo_first_turn="tokens"``), or the real
messages (``"messages"``: Dynamo renders the template). ``cache_salt`` goes to
``nvext.cache_salt``, ``priority`` to ``nvext.agent_hints.priority``, the tokenizer's stop ids
to the root ``stop_token_ids``; vLLM-only keys never reach Dynamo (it 400s on them). Ids,
logprobs and prompt ids come from ``nvext.engine_data`` (C.2). Dynamo 1.6.1 runs no tool parser
on token-in requests, so the message is decoded locally from the ids."""

from __future__ import annotations

from typing import Any

from fasttito import _core
from fasttito.errors import ConfigError
from fasttito.transports._base import GenerateArgs, RolloutState, Transport, Turn, ids_arg

__all__ = ["DynamoNvextTransport"]


class DynamoNvextTransport(Transport):
    name = "dynamo-nvext"
    wire = "dynamo"
    needs_tokenizer = True

    def ask_top_logprobs(self, k: int, sampling: dict[str, Any]) -> None:
        raise ConfigError(
            f"top_logprobs={k}: dynamo-nvext cannot return top logprobs by token id (Dynamo's "
            "engine_data carries only the sampled tokens' logprobs, its chat logprobs name "
            "tokens by text); use vllm-generate against the engine for top logprobs"
        )

    async def generate(self, state: RolloutState, args: GenerateArgs) -> Turn:
        c = self.session
        assert state.rollout is not None
        render = c.config.dynamo_first_turn == "tokens"
        plan = state.rollout.prepare(
            args.messages, args.tools, args.chat_template_kwargs, render_mito=render
        )
        common: dict[str, Any] = dict(
            sampling=args.sampling,
            max_tokens=args.max_tokens,
            stop_token_ids=c.stop_token_ids,
            cache_salt=args.cache_salt,
            priority=args.priority,
            chat_template_kwargs=args.chat_template_kwargs,
        )
        if plan.prompt_ids is not None:
            await self.check_prompt(plan.prompt_ids)
            body = _core.request_body(
                "dynamo", c.model, token_ids=ids_arg(plan.prompt_ids), **common
            )
        else:
            body = _core.request_body(
                "chat", c.model, messages=args.messages, tools=args.tools, target="dynamo", **common
            )
        raw = await self.post(state, c.config.v1_url + "/chat/completions", body)
        return self.finish_turn(state, plan, self.parse(raw), decode_locally=True, args=args)
