"""Benchmark: verifiers' ``OpenAIChatCompletionsTokenClient`` (0.3.1) against
``fasttito.verifiers.OpenAIChatCompletionsTokenClient``, the whole ``get_native_response`` path.

One process, release build, no network: both classes get a real ``openai.AsyncOpenAI`` whose
httpx client is served by an in-process ``httpx.MockTransport`` answering with recorded bodies
(the vLLM ``/v1/chat/completions(/tokens)`` response of each turn, with ``prompt_token_ids``,
``token_ids`` and logprobs, and the ``/tokenize`` answers of the bridges, looked up by request
bytes). A rollout of T turns is a qwen2.5 tool loop (user, then call/result pairs) driven the way
a verifiers ``MultiTurnEnv`` drives it: ``vf.Message`` trajectory steps, ``to_native_prompt``,
``get_native_response``, ``from_native_response``, ``parse_response_tokens``.

It reports the process CPU time (``time.process_time``) per turn, averaged over the rollout and
for its last turn, of

* ``get_native_response`` alone (prefix match, bridge, request body, HTTP through httpx,
  response parsing), and
* the client's part of a turn: ``to_native_prompt`` + ``get_native_response`` +
  ``raise_from_native_response`` + ``from_native_response``.

Candidates: verifiers' class; fasttito's class as configured by default (bridges through the
server's ``/tokenize``, two calls per turn, like verifiers); fasttito's class with a local
tokenizer (``tokenizer=``, no ``/tokenize`` calls). The fake server's own work (a dict lookup
and an ``httpx.Response``) is inside every number, equally.

Run: ``fasttito bench verifiers`` (``--quick``: 4 and 16 turns, one rollout each).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from fasttito.bench._timing import model_folder, peer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TITLE = "verifiers' OpenAIChatCompletionsTokenClient against fasttito.verifiers (qwen2.5 tool loop)"
MODEL = "Qwen/Qwen2.5-7B-Instruct"
TURNS = (4, 16, 64)
IM_END = 151645
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file of the repository",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
}
SAMPLING = {"max_tokens": 512, "temperature": 1.0, "extra_body": {"cache_salt": "policy-7"}}


def _tool_result(k: int) -> str:
    lines = [f"def handler_{k}_{i}(request):\n    return route(request, {i})" for i in range(12)]
    return f"# src/module_{k}.py\n" + "\n\n".join(lines)


def _assistant(k: int, final: bool) -> dict[str, Any]:
    if final:
        return {"role": "assistant", "content": "All files are read; the handlers route requests."}
    return {
        "role": "assistant",
        "content": f"I will read module {k} next.",
        "tool_calls": [
            {
                "id": f"call{k:05d}",
                "type": "function",
                "function": {
                    "name": "read_file",
                    "arguments": json.dumps({"path": f"src/module_{k}.py"}),
                },
            }
        ],
    }


class Recorded:
    """The recorded server: per-turn chat responses, and ``/tokenize`` answers by request bytes
    (computed once, on the warm-up rollout, with the local tokenizer; cached afterwards)."""

    def __init__(self, tok: Any, turns: int) -> None:
        self.tok = tok
        self.turn = 0
        self.responses: list[bytes] = []
        self.tokenized: dict[bytes, bytes] = {}
        conv: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a coding agent. Use the tools."},
            {"role": "user", "content": "Read every module and summarize the handlers."},
        ]
        for k in range(turns):
            asst = _assistant(k, final=k == turns - 1)
            prompt = tok.apply_chat_template(conv, tools=[TOOL], add_generation_prompt=True)
            full = tok.apply_chat_template([*conv, asst], tools=[TOOL])
            rest = full[len(prompt) :]
            completion = rest[: rest.index(IM_END) + 1]
            self.responses.append(self._body(k, prompt, completion, asst))
            conv += [asst]
            if "tool_calls" in asst:
                tool = {"role": "tool", "tool_call_id": f"call{k:05d}", "content": _tool_result(k)}
                conv.append(tool)

    @staticmethod
    def _body(k: int, prompt: list[int], completion: list[int], asst: dict[str, Any]) -> bytes:
        message = {"role": "assistant", "content": asst["content"], "reasoning": None}
        if "tool_calls" in asst:
            message["tool_calls"] = asst["tool_calls"]
        return json.dumps(
            {
                "id": f"chatcmpl-{k}",
                "object": "chat.completion",
                "created": 1760000000 + k,
                "model": MODEL,
                "prompt_token_ids": prompt,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": {
                            "content": [
                                {"token": f"t{t}", "logprob": -0.01 * (i % 7), "top_logprobs": []}
                                for i, t in enumerate(completion)
                            ]
                        },
                        "finish_reason": "tool_calls" if "tool_calls" in asst else "stop",
                        "stop_reason": None,
                        "token_ids": completion,
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt),
                    "completion_tokens": len(completion),
                    "total_tokens": len(prompt) + len(completion),
                },
            }
        ).encode()

    def handle(self, request: Any) -> Any:
        import httpx

        path = request.url.path
        if path == "/tokenize":
            body = request.content
            answer = self.tokenized.get(body)
            if answer is None:
                req = json.loads(body)
                ids = self.tok.apply_chat_template(
                    req["messages"],
                    tools=req.get("tools"),
                    add_generation_prompt=req.get("add_generation_prompt", True),
                    **(req.get("chat_template_kwargs") or {}),
                )
                answer = json.dumps(
                    {"count": len(ids), "max_model_len": 32768, "tokens": ids}
                ).encode()
                self.tokenized[body] = answer
            return httpx.Response(200, content=answer, headers={"content-type": "application/json"})
        if path in ("/v1/chat/completions", "/v1/chat/completions/tokens"):
            return httpx.Response(
                200, content=self.responses[self.turn], headers={"content-type": "application/json"}
            )
        return httpx.Response(404, json={"detail": "Not Found"})


async def _rollout(client: Any, server: Recorded, turns: int) -> tuple[list[float], list[float]]:
    """One rollout; per turn: CPU seconds of get_native_response, and of the client's whole part."""
    import verifiers as vf
    from verifiers.legacy.utils.response_utils import parse_response_message, parse_response_tokens

    tool_defs = [
        vf.Tool(
            name="read_file",
            description=TOOL["function"]["description"],
            parameters=TOOL["function"]["parameters"],
        )
    ]
    messages: list[Any] = [
        vf.SystemMessage(content="You are a coding agent. Use the tools."),
        vf.UserMessage(content="Read every module and summarize the handlers."),
    ]
    state: dict[str, Any] = {"model": MODEL, "trajectory": []}
    native_only: list[float] = []
    whole: list[float] = []
    clock = time.process_time
    for k in range(turns):
        server.turn = k
        t0 = clock()
        prompt, extra = await client.to_native_prompt(messages)
        tools = await client.to_native_tools(tool_defs)
        t1 = clock()
        native = await client.get_native_response(
            prompt, MODEL, dict(SAMPLING), tools, state=state, **extra
        )
        t2 = clock()
        await client.raise_from_native_response(native)
        response = await client.from_native_response(native)
        t3 = clock()
        native_only.append(t2 - t1)
        whole.append(t3 - t0)
        assert response.message.tokens is not None
        # the environment's side (not timed): a verifiers trajectory step, then the tool result
        completion = await parse_response_message(response)
        state["trajectory"].append(
            {
                "prompt": list(messages),
                "completion": completion,
                "response": response,
                "tokens": await parse_response_tokens(response),
                "is_truncated": False,
            }
        )
        messages = messages + completion
        if response.message.tool_calls:
            call = response.message.tool_calls[0]
            messages.append(vf.ToolMessage(tool_call_id=call.id, content=_tool_result(k)))
    return native_only, whole


def _make_clients(server: Recorded, model_dir: Path) -> dict[str, Any]:
    import httpx
    import openai
    from verifiers.legacy.clients.openai_chat_completions_token_client import (
        OpenAIChatCompletionsTokenClient as VfClient,
    )

    from fasttito.verifiers import OpenAIChatCompletionsTokenClient as FtClient

    def oai() -> Any:
        http = httpx.AsyncClient(transport=httpx.MockTransport(server.handle))
        return openai.AsyncOpenAI(
            base_url="http://bench.invalid/v1", api_key="sk-bench", http_client=http
        )

    return {
        "verifiers 0.3.1": VfClient(oai()),
        "fasttito (/tokenize bridges)": FtClient(oai(), renderer_transport="prime_vllm_generate"),
        "fasttito (local bridges)": FtClient(oai(), tokenizer=model_dir),
    }


def measure(quick: bool) -> list[dict[str, Any]]:
    """The table's rows (:func:`table_rows` of :func:`measure_raw`)."""
    return table_rows(measure_raw(quick))


def measure_raw(quick: bool = False) -> list[dict[str, Any]]:
    """Per-turn client CPU of each candidate at 4, 16 and 64 turns (``quick``: 4 and 16, one
    rollout each). One dict per (turns, candidate): ``turns``, ``candidate``,
    ``native_ms_per_turn``, ``native_ms_last_turn``, ``client_ms_per_turn``,
    ``client_ms_last_turn``, ``tito_turns`` (fasttito's count), ``rollouts``."""
    import fasttito

    for module in ("verifiers", "openai", "httpx"):
        peer(module)
    model_dir = model_folder("qwen2.5")
    tok = fasttito.Tokenizer.from_dir(model_dir)
    turn_counts = TURNS[:2] if quick else TURNS
    rollouts = 1 if quick else 5
    logging_off()
    rows: list[dict[str, Any]] = []
    for turns in turn_counts:
        server = Recorded(tok, turns)
        clients = _make_clients(server, model_dir)
        for name, client in clients.items():
            asyncio.run(_rollout(client, server, turns))  # warm-up: caches, /tokenize answers
            per_native: list[float] = []
            per_whole: list[float] = []
            last_native: list[float] = []
            last_whole: list[float] = []
            fasttito.reset_metrics()
            for _ in range(rollouts):
                gc.collect()
                native, whole = asyncio.run(_rollout(client, server, turns))
                per_native.append(sum(native) / turns)
                per_whole.append(sum(whole) / turns)
                last_native.append(native[-1])
                last_whole.append(whole[-1])
            rows.append(
                {
                    "turns": turns,
                    "candidate": name,
                    "native_ms_per_turn": statistics.median(per_native) * 1e3,
                    "native_ms_last_turn": statistics.median(last_native) * 1e3,
                    "client_ms_per_turn": statistics.median(per_whole) * 1e3,
                    "client_ms_last_turn": statistics.median(last_whole) * 1e3,
                    "tito_turns": fasttito.metrics().get("tito", 0) // rollouts
                    if name.startswith("fasttito")
                    else None,
                    "rollouts": rollouts,
                }
            )
    return rows


def logging_off() -> None:
    """verifiers logs a line per MITO fallback; none is expected, and I/O is not the client's."""
    import logging

    logging.getLogger("verifiers").setLevel(logging.ERROR)


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the markdown table: ms per turn (last turn in parentheses) and ratio =
    verifiers / candidate."""
    base = {r["turns"]: r for r in rows if r["candidate"].startswith("verifiers")}
    out = []
    for r in rows:
        b = base[r["turns"]]
        out.append(
            {
                "turns": r["turns"],
                "client": r["candidate"],
                "get_native_response, ms/turn (last turn)": (
                    f"{r['native_ms_per_turn']:.3f} ({r['native_ms_last_turn']:.3f})"
                ),
                "vs verifiers": f"{b['native_ms_per_turn'] / r['native_ms_per_turn']:.1f}x",
                "client part of a turn, ms/turn (last turn)": (
                    f"{r['client_ms_per_turn']:.3f} ({r['client_ms_last_turn']:.3f})"
                ),
                "vs verifiers (client part)": (
                    f"{b['client_ms_per_turn'] / r['client_ms_per_turn']:.1f}x"
                ),
                "TITO turns": ""
                if r["tito_turns"] is None
                else f"{r['tito_turns']}/{r['turns'] - 1}",
            }
        )
    return out


def versions() -> str:
    from fasttito import _core

    vf, openai, httpx = peer("verifiers"), peer("openai"), peer("httpx")
    return (
        f"fasttito {_core.__version__} ({_core.build_profile}), verifiers {vf.__version__}, "
        f"openai {openai.__version__}, httpx {httpx.__version__}, Python {sys.version.split()[0]}"
    )


def summary(rows: list[dict[str, Any]]) -> list[str]:
    return [
        "median of the rollouts' mean per-turn process CPU; ratio = verifiers / candidate; "
        "recorded responses over httpx.MockTransport (no network)"
    ]
