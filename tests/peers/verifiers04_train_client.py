"""verifiers 0.4.0's TrainClient with fasttito's renderer, against fasttito's local engine.

Runs in a virtualenv of its own (verifiers 0.4.0 conflicts with the test extra's verifiers 0.3.1):
``scripts/install-peers.sh`` builds it, ``tests/test_renderers.py`` runs this file there. Usage:
``python verifiers04_train_client.py MODEL_DIR``; exit 0 and a last line ``OK <turns>`` when every
check passes.

An 8-turn tool rollout through ``TrainClient.get_response`` (its renderer pool, its bridge and
its call of ``renderers.client.generate``), configured by ``CustomRendererConfig(import_path=
"fasttito.renderers.Renderer")``. The turn object stands in for verifiers' trace graph
(``PendingTurn``): it hands TrainClient the previous turn's prompt and sampled ids and the new
messages, as the graph does. Checked: every turn from the second is bridged, and (Qwen2.5 keeps
its history stable) the bridged prompt equals transformers' render of the whole conversation.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


class Turn:
    """The part of verifiers' PendingTurn that TrainClient reads."""

    def __init__(self, prompt: list[Any], tools: list[Any], tail_start: int, prev: Any) -> None:
        self.prompt = prompt
        self.tools = tools
        self.tail_start = tail_start
        self.prev = prev  # (prompt ids, completion ids) of the previous turn
        self.path_len = len(prev[0]) + len(prev[1])

    @property
    def tail(self) -> list[Any]:
        return self.prompt[self.tail_start :]

    def previous_renderer_token_ids(self) -> tuple[list[int], list[int]]:
        return list(self.prev[0]), list(self.prev[1])

    @property
    def renderer_path_len(self) -> int:
        return self.path_len

    def prompt_message_spans(self, attribution: Any) -> list[Any]:
        from renderers import RenderedTokens

        spans = RenderedTokens(
            message_indices=attribution.message_indices[self.path_len :],
            message_roles=attribution.message_roles,
        ).message_token_spans()
        return [None] * self.tail_start + [
            None if s is None else (s[0] + self.path_len, s[1] + self.path_len) for s in spans
        ]


async def main(model_dir: str, base_url: str) -> int:
    from renderers.configs import CustomRendererConfig
    from transformers import AutoTokenizer
    from verifiers.v1.clients.train import TrainClient
    from verifiers.v1.configs.client import TrainClientConfig
    from verifiers.v1.dialects.chat import ChatDialect, message_to_wire
    from verifiers.v1.types import (
        AssistantMessage,
        SamplingConfig,
        SystemMessage,
        Tool,
        ToolMessage,
        UserMessage,
    )

    os.environ.setdefault("FASTTITO_PEER_KEY", "unused")
    client = TrainClient(
        TrainClientConfig(
            base_url=base_url + "/v1",
            api_key_var="FASTTITO_PEER_KEY",
            renderer=CustomRendererConfig(
                import_path="fasttito.renderers.Renderer", model_dir=model_dir
            ),
            renderer_model_name=model_dir,
        )
    )
    hf = AutoTokenizer.from_pretrained(model_dir)
    tools = [Tool(**TOOL)]
    wire_tools = [{"type": "function", "function": TOOL}]
    messages: list[Any] = [
        SystemMessage(content="You are a weather bot."),
        UserMessage(content="Weather in Paris?"),
    ]
    prev = None
    tail_start = 0
    bridged = 0
    for k in range(8):
        turn = Turn(list(messages), tools, tail_start, prev) if prev is not None else None
        response = await client.get_response(
            ChatDialect(),
            {
                "model": "m",
                "messages": [message_to_wire(m) for m in messages],
                "tools": wire_tools,
            },
            SamplingConfig(max_tokens=64, temperature=1.0),
            turn=turn,  # type: ignore[arg-type]
        )
        tokens = response.tokens
        assert tokens is not None and tokens.completion_ids, f"turn {k + 1}: no ids"
        assert len(tokens.completion_logprobs) == len(tokens.completion_ids)
        if k > 0:
            assert tokens.bridged, f"turn {k + 1} was not bridged"
            bridged += 1
            # the model sampled its arguments as an object: render them as one (verifiers
            # keeps them as a JSON string, which Qwen2.5's template would quote)
            wire = [message_to_wire(m) for m in messages]
            for m in wire:
                for call in m.get("tool_calls") or []:
                    call["function"]["arguments"] = json.loads(call["function"]["arguments"])
            want = hf.apply_chat_template(
                wire,
                tools=wire_tools,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
            got, want = list(tokens.prompt_ids), list(want)
            at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y), 0)
            assert got == want, (
                f"turn {k + 1}: bridge != full render at {at}: "
                f"{hf.decode(got[at - 20 : at + 20])!r} vs {hf.decode(want[at - 20 : at + 20])!r}"
            )
        prev = (tokens.prompt_ids, tokens.completion_ids)
        message = response.message
        messages.append(
            AssistantMessage(content=message.content or "", tool_calls=message.tool_calls)
        )
        tail_start = len(messages)
        if message.tool_calls:
            for call in message.tool_calls:
                messages.append(
                    ToolMessage(
                        tool_call_id=call.id,
                        name=call.name,
                        content=json.dumps({"sky": "clear"}),
                    )
                )
        else:
            messages.append(UserMessage(content="And in Rome?"))
    await client.close()
    print(f"OK {bridged + 1}")
    return 0


if __name__ == "__main__":
    from fasttito.testing.launch import start_engine

    model = sys.argv[1]
    with start_engine(
        model, served_model_name="m", extra_args=["--generate-shape", "labels"]
    ) as engine:
        sys.exit(asyncio.run(main(model, engine.base_url)))
