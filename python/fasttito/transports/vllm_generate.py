"""``vllm-generate``: vLLM >= 0.20 ``POST {root}/inference/v1/generate`` with ``token_ids``
every turn (docs/wire.md B.2): the stitched ids on TITO turns, a full local render otherwise. The
response carries ids only, so the message is decoded locally."""

from __future__ import annotations

from fasttito import _core
from fasttito.transports._base import GenerateArgs, RolloutState, Transport, Turn, ids_arg

__all__ = ["VllmGenerateTransport"]


class VllmGenerateTransport(Transport):
    name = "vllm-generate"
    wire = "vllm-generate"
    needs_tokenizer = True

    async def generate(self, state: RolloutState, args: GenerateArgs) -> Turn:
        c = self.session
        assert state.rollout is not None
        plan = state.rollout.prepare(args.messages, args.tools, args.chat_template_kwargs)
        await self.check_prompt(plan.prompt_ids)
        body = _core.request_body(
            "vllm-generate",
            c.model,
            token_ids=ids_arg(plan.prompt_ids),
            sampling=args.sampling,
            max_tokens=args.max_tokens,
            stop_token_ids=c.stop_token_ids,
            cache_salt=args.cache_salt,
            priority=args.priority,
        )
        raw = await self.post(state, c.config.root_url + "/inference/v1/generate", body)
        return self.finish_turn(state, plan, self.parse(raw), decode_locally=True, args=args)
