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
from fasttito.transports._base import GenerateArgs, RolloutState, Transport

__all__ = ["DynamoNvextTransport"]


class DynamoNvextTransport(Transport):
    name = "dynamo-nvext"
    wire = "dynamo"
    needs_tokenizer = True
    kind = "dynamo"
    ids_route = ("v1", "/chat/completions")
    messages_target = "dynamo"
    body_template_kwargs = True

    def ask_top_logprobs(self, k: int, sampling: dict[str, Any]) -> None:
        raise ConfigError(
            f"top_logprobs={k}: dynamo-nvext cannot return top logprobs by token id (Dynamo's "
            "engine_data carries only the sampled tokens' logprobs, its chat logprobs name "
            "tokens by text); use vllm-generate against the engine for top logprobs"
        )

    async def plan(self, state: RolloutState, args: GenerateArgs) -> _core.Plan:
        # dynamo_first_turn="messages": turn 1 and fallbacks go as messages (Dynamo renders)
        render = self.session.config.dynamo_first_turn == "tokens"
        return self.plan_turn(state, args, render_mito=render)
