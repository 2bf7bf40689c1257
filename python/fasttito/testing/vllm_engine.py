#!/usr/bin/env python
"""A vLLM-compatible test engine: real HTTP on 127.0.0.1, transformers as the oracle.

Run::

    python -m fasttito.testing.vllm_engine --model models/qwen2.5 --port 0 \
        [--served-model-name NAME]... [--max-model-len 32768] [--idle-timeout 300] \
        [--api-key KEY] [--scheduling-policy priority|fcfs] [--disable-route PATH]... \
        [--stop-token-id ID]... [--port-file FILE] [--parent-pid PID] [--version-string V] \
        [--max-recorded-requests 10000] [--prefix-store-size 8192] \
        [--renderer auto|transformers|fasttito]

When it listens it prints ONE line on stdout, then nothing else (logs go to stderr)::

    {"event": "ready", "host": "127.0.0.1", "port": 41234, "pid": 123, "model": "qwen2.5",
     "renderer": "transformers"}

It stops itself on SIGTERM/SIGINT, after ``--idle-timeout`` seconds without any request, and
when its parent process dies (``os.getppid()`` changes, or ``--parent-pid`` disappears).
It renders and tokenizes with ``transformers`` when that is importable (``--renderer``, see
``fasttito.testing.renderer``): then no fasttito code produces what it answers, so it is the
independent side of every wire test. Without transformers (an installed wheel, ``fasttito
demo``) it renders with ``fasttito.Tokenizer``.

Routes (field names and shapes follow ``docs/wire.md`` sections A and B)
----------------------------------------------------------------------------
``GET  /v1/models``                  ``{"object": "list", "data": [{"id", "object": "model",
                                     "max_model_len", ...}]}``
``POST /v1/chat/completions``        vLLM ``ChatCompletionResponse`` (+ ``prompt_token_ids`` and
                                     ``choices[].token_ids`` when ``return_token_ids``)
``POST /v1/chat/completions/tokens`` prime-rl route: as above, but the prompt ids are ``tokens``
                                     (``messages`` must still render);
                                     ``len(tokens) >= max_model_len`` is a 400
``POST /tokenize``                   chat variant (``messages``) and completion variant (``prompt``)
``POST /detokenize``                 ``{"tokens": [...]}`` -> ``{"prompt": text}``
``POST /inference/v1/generate``      vLLM >= 0.20 token-in/token-out (``token_ids`` +
                                     ``sampling_params``)
``GET  /health``, ``GET /version``   as vLLM
``/_admin/*``                        test control, below (never authenticated, never recorded)

With ``--api-key`` every path starting with ``/v1`` needs ``Authorization: Bearer KEY`` (else 401
``{"error": "Unauthorized"}``, vLLM's body). Errors use vLLM's shape
``{"error": {"message", "type", "param", "code"}}``; unknown routes give FastAPI's
``{"detail": "Not Found"}`` (404) / ``{"detail": "Method Not Allowed"}`` (405).

Message handling (as vLLM does before rendering): tool-call ``arguments`` JSON strings are parsed
into dicts (``""``/``None`` -> ``{}``), a list ``content`` of text parts is joined with ``"\\n"``
(other parts are a 400), ``reasoning`` is copied to ``reasoning_content``. ``tools`` are passed to
the template as received. Rendering = ``apply_chat_template(tokenize=False)`` then
``tokenizer(text, add_special_tokens=False)``, identical to ``tokenize=True``.

Completions ("script")
----------------------
For the conversation ``conv`` the script chooses an assistant message ``asst``; then::

    prefix = render(conv, add_generation_prompt=True)
    full   = render(conv + [asst], add_generation_prompt=False)
    require full.startswith(prefix)
    turn   = full[len(prefix):] up to and including the first stop-token string
    ids    = encode(prefix + turn)[len(encode(prefix)):]      (checked to extend encode(prefix))

so the completion is the assistant turn exactly as the template renders it, ending in the stop
token (the eos token, plus ``<|im_end|> <|endoftext|> <|eot_id|> <|eom_id|> <|end_of_text|>
<|call|> <|return|> </s>`` where they are added tokens; ``--stop-token-id`` overrides). When an
assumption fails the engine answers 500 ``{"error": {..., "type": "TestEngineError",
"reason": R}}`` rather than wrong ids; R is one of ``template_rejected_scripted_message``,
``not_prefix_stable``, ``no_stop_token_in_rendered_turn``, ``token_boundary_merge``,
``history_unstable`` (only with ``strict_stability``), ``ids_not_understood`` (generate).
Every completion is also checked for history stability (the next turn's render must start with
``prefix + turn``); the result is in ``/_admin/requests`` (``history_stable``).

``max_tokens`` / ``max_completion_tokens`` (chat) or ``sampling_params.max_tokens`` (generate) cut
the turn: ``finish_reason: "length"``, no stop token, ``content`` = decoded text, no tool calls.
The default is ``max_model_len - prompt_len`` (vLLM's ``get_max_tokens``; prime-rl's generate
default). An id of the request's ``stop_token_ids`` inside the turn ends it there
(``finish_reason: "stop"``, ``stop_reason: id``). Logprobs are deterministic pseudo-random
negative floats of (token id, absolute position); ``top_logprobs`` lists the sampled token first.

Admin API (JSON in, JSON out)
-----------------------------
``POST /_admin/script`` body = the new script, every key optional (missing keys take defaults)::

    {"mode": "tool_agent",          # "tool_agent" | "text" | "fixed" | "sequence"
     "tool_calls": 3,               # tool_agent: tool-calling turns after the last user message
                                    #   (alias "turns"), then a final text answer
     "parallel": 1,                 # tool_agent: calls per tool-calling turn
     "tool_content": null,          # tool_agent: text before the calls (null: no content)
     "final_content": null,         # tool_agent: final answer
                                    #   (null: "Final answer after N tool calls.")
     "content": null,               # text: the answer (null: "Hello from the test engine.")
     "reasoning": null,             # every mode: reasoning_content of the scripted message
     "message": null,               # fixed: the assistant message, OpenAI shape
     "messages": null,              # sequence: messages[i] answers a conversation with i assistant
                                    #   messages so far (the last one repeats)
     "tools": null,                 # generate only: tools of a conversation the engine has not seen
                                    #   (null: [get_weather])
     "chat_template_kwargs": {},    # generate only: template kwargs for such conversations
     "strict_stability": false}     # 500 "history_unstable" instead of answering an unstable turn

  -> ``{"ok": true, "script": {...}}``; ``GET /_admin/script`` -> the same.
  tool_agent: the last message ``user`` or ``tool`` and fewer than ``tool_calls`` tool-calling
  assistant turns since the last user message -> a turn calling the first tool of ``tools``
  (``get_weather`` without tools); arguments come from its JSON schema and the turn number,
  ids are ``call`` + 3-digit turn + 2-digit index (9 alphanumerics, as mistral-nemo requires).
  Otherwise the final text answer.
``GET /_admin/requests`` -> the last ``--max-recorded-requests`` non-admin requests:
  ``{"count": N, "requests": [{"seq", "time", "method", "path", "query",
  "headers" (lower-case names; authorization/cookie/api-key values "<redacted>"),
  "authorization_present", "authorization_valid" (null without --api-key), "body" (JSON, or
  {"_raw": text}), "prompt_ids", "completion_ids" (as generated, before any fault), "status",
  "fault", "error", "history_stable", "derived" (generate: how the conversation was recovered)}]}``.
``POST /_admin/reset`` -> clears requests, faults, the prefix store; script back to default.
``POST /_admin/faults`` body ``{"mode": M, "count": 1, "path": null, ...}`` or
  ``{"faults": [...], "replace": false}`` -> ``{"ok": true, "faults": [queue]}``;
  ``GET /_admin/faults`` -> the queue. Each matching request takes the first queued fault with
  count left. ``path`` restricts a fault to one route; without it, body-shape faults apply to the
  three completion routes and the others to any non-admin route. Modes:

  ``http_500`` ``http_502`` ``http_503`` ``http_504``, ``status`` (+ ``"status": N``): that
      status, vLLM error JSON (``"body": "text"`` sends that text as text/plain instead); the
      request is not processed
  ``delay`` (+ ``"seconds": S``, default 1.0): wait, then answer normally
  ``stall`` (+ ``"seconds": S``, default 1.0): headers + half of the body, then nothing for S
      seconds (a client timeout shorter than S fires mid-body), then a TCP reset
  ``reset``: headers + half of the body, then a TCP reset
  ``drop``: close the connection without answering
  ``truncated_json``: 200 with the first half of the JSON body (Content-Length matches)
  ``malformed_json``: 200 with a body that is not JSON
  ``missing_token_ids``: ``choices[0].token_ids`` key removed
  ``missing_prompt_token_ids``: top-level ``prompt_token_ids`` removed
  ``short_logprobs``: ``logprobs.content`` one entry shorter than ``token_ids``
  ``long_logprobs``: ``logprobs.content`` one entry longer than ``token_ids``
  ``null_logprob``: one ``logprob`` is ``null``
  ``oov_token_id``: ``token_ids[0]`` = vocab size + 12345
  ``no_stop_token``: the final stop token (and its logprob) removed, finish_reason unchanged

  Random faults, for soak runs: ``POST /_admin/faults`` with ``{"random": {"rate": R, "modes":
  [M, ...], "seed": 0, "seconds": 1.0, "delay_seconds": 1.0}}`` (``seconds``: of a stall) gives
  each matching request (same route rules as above) probability R of one fault drawn uniformly
  from the modes (``{"random": null}`` turns it off). Queued faults are taken first.
  ``GET /_admin/faults`` also returns ``"random"`` and ``"injected"``: how many faults of each mode
  were applied since the last reset, queued and random alike (a fault is counted when its request
  takes it, before the answer is sent).

``/inference/v1/generate`` (ids only)
-------------------------------------
Every full completion (any route) is stored (LRU, ``--prefix-store-size``) as
``prompt_ids + completion_ids`` -> (conversation incl. the scripted assistant, tools, template
kwargs). A generate request is resolved by:

1. the longest stored sequence that prefixes ``token_ids`` (looked up only at positions right
   after a stop token); the rest is decoded and matched against the template's render of the
   allowed tails (the tool results of the stored assistant's calls, optionally then one user
   message; or one user message), with placeholder contents turned into regex groups, which
   recovers the new messages and their text;
2. otherwise the whole prompt is matched the same way against ``[user]`` and ``[system, user]``
   rendered with the script's ``tools`` (default ``[get_weather]``) or no tools, and the script's
   ``chat_template_kwargs``.

Anything else (e.g. a truncated previous turn, an unknown tool list) is a 500
``ids_not_understood`` naming what to set. Supported: the tool-agent loop for history-stable
templates (see ``docs/models.md``: qwen2.5, llama-3.2 single calls, qwen3 with
reasoning on every turn, mistral-nemo tool-only tails).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import asyncio
import copy
import hashlib
import json
import random
import re
import signal
import socket
import struct
import sys
import time
import uuid
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error answered in vLLM's ``ErrorResponse`` shape."""

    def __init__(
        self, status: int, message: str, type_: str = "BadRequestError", **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        err = {"message": self.message, "type": self.type, "param": None, "code": self.status}
        err.update(self.extra)
        return {"error": err}


def script_error(reason: str, message: str) -> ApiError:
    """The scripted completion cannot be built without lying about the ids."""
    return ApiError(500, f"test engine: {message}", "TestEngineError", reason=reason)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequestError")


# --------------------------------------------------------------------------------------------
# Model: tokenizer, rendering, caches
# --------------------------------------------------------------------------------------------

KNOWN_STOP_STRINGS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|call|>",
    "<|return|>",
    "</s>",
)
RESERVED_TEMPLATE_KWARGS = (
    "add_generation_prompt",
    "continue_final_message",
    "tokenize",
    "tools",
    "conversation",
    "messages",
    "documents",
    "return_dict",
)


class LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        try:
            self.data.move_to_end(key)
            return self.data[key]
        except KeyError:
            return None

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


class TemplateFailure(Exception):
    """apply_chat_template raised (raise_exception, undefined variable, type error...)."""


class Model:
    def __init__(
        self, model_dir: str, stop_token_ids: list[int] | None = None, renderer: str | None = None
    ) -> None:
        from fasttito.testing.renderer import load_renderer

        self.dir = model_dir
        self.tok, self.renderer = load_renderer(model_dir, renderer)
        self.vocab_size = len(self.tok)
        added = self.tok.get_added_vocab()
        if stop_token_ids:
            stops = list(stop_token_ids)
        else:
            stops = []
            if self.tok.eos_token_id is not None:
                stops.append(int(self.tok.eos_token_id))
            for s in KNOWN_STOP_STRINGS:
                if s in added and added[s] not in stops:
                    stops.append(int(added[s]))
        if not stops:
            raise SystemExit(f"{model_dir}: no eos token; pass --stop-token-id")
        self.stop_ids: list[int] = stops
        self.stop_set = frozenset(stops)
        self.stop_strs = {i: str(self.tok.convert_ids_to_tokens(i)) for i in stops}
        self._render_cache = LRU(4096)
        self._encode_cache = LRU(4096)
        self._tokstr: dict[int, str] = {}

    # -- text <-> ids -------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        key = (text, add_special_tokens)
        hit = self._encode_cache.get(key)
        if hit is None:
            hit = list(self.tok(text, add_special_tokens=add_special_tokens)["input_ids"])
            self._encode_cache.put(key, hit)
        return list(hit)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return str(
            self.tok.decode(
                ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
            )
        )

    def token_text(self, token_id: int) -> str:
        s = self._tokstr.get(token_id)
        if s is None:
            s = self.decode([token_id]) if 0 <= token_id < self.vocab_size else ""
            self._tokstr[token_id] = s
        return s

    # -- chat template ------------------------------------------------------------------------
    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[Any] | None,
        *,
        add_generation_prompt: bool,
        continue_final_message: bool = False,
        ctk: dict[str, Any] | None = None,
    ) -> str:
        kwargs = {k: v for k, v in (ctk or {}).items() if k not in RESERVED_TEMPLATE_KWARGS}
        key = json.dumps(
            [messages, tools, add_generation_prompt, continue_final_message, kwargs],
            sort_keys=True,
            default=str,
        )
        hit = self._render_cache.get(key)
        if hit is not None:
            if isinstance(hit, TemplateFailure):
                raise hit
            return str(hit)
        try:
            text = self.tok.apply_chat_template(
                copy.deepcopy(messages),
                tools=copy.deepcopy(tools) if tools is not None else None,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                tokenize=False,
                **kwargs,
            )
        except Exception as exc:  # jinja errors, raise_exception, TypeError ...
            failure = TemplateFailure(f"{type(exc).__name__}: {exc}")
            self._render_cache.put(key, failure)
            raise failure from exc
        if not isinstance(text, str):
            raise TemplateFailure(f"apply_chat_template returned {type(text).__name__}")
        self._render_cache.put(key, text)
        return text


# --------------------------------------------------------------------------------------------
# Messages (vLLM-like normalization before rendering)
# --------------------------------------------------------------------------------------------

TEXT_PART_TYPES = ("text", "input_text", "output_text")


def _parse_arguments(args: Any, where: str) -> Any:
    if args is None or args == "":
        return {}
    if isinstance(args, str):
        try:
            return json.loads(args)
        except json.JSONDecodeError as exc:
            raise bad_request(f"{where}.function.arguments is not valid JSON: {exc}") from exc
    return copy.deepcopy(args)


def normalize_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list of message objects")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad_request(f"{where} must be an object with a string 'role'")
        msg = copy.deepcopy(m)
        content = msg.get("content")
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if isinstance(part, str):
                    texts.append(part)
                elif isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES:
                    texts.append(str(part.get("text", "")))
                else:
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise bad_request(
                        f"{where}.content[{j}] of type {kind!r}: the test engine supports text "
                        "content only (vLLM's multimodal processor is not emulated)"
                    )
            msg["content"] = "\n".join(texts)
        elif content is not None and not isinstance(content, str):
            raise bad_request(f"{where}.content must be a string, a list of parts or null")
        if msg["role"] == "assistant" and isinstance(msg.get("tool_calls"), list):
            calls = []
            for j, tc in enumerate(msg["tool_calls"]):
                if not isinstance(tc, dict) or not isinstance(tc.get("function"), dict):
                    raise bad_request(f"{where}.tool_calls[{j}] must have a 'function' object")
                fn = tc["function"]
                fn["arguments"] = _parse_arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]")
                calls.append(tc)
            msg["tool_calls"] = calls
        if msg.get("reasoning") is not None and msg.get("reasoning_content") is None:
            msg["reasoning_content"] = msg["reasoning"]
        out.append(msg)
    return out


def normalize_tools(tools: Any) -> list[Any] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise bad_request("'tools' must be a list or null")
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise bad_request(f"tools[{i}] must be an object")
    return copy.deepcopy(tools)


# --------------------------------------------------------------------------------------------
# Script (completion policy)
# --------------------------------------------------------------------------------------------

DEFAULT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
CITIES = ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Perth", "Dakar", "Riga")
SCRIPT_MODES = ("tool_agent", "text", "fixed", "sequence")


def _function_of(tool: Any) -> dict[str, Any] | None:
    if isinstance(tool, dict):
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return fn
        if isinstance(tool.get("name"), str):  # flat tool shape
            return tool
    return None


def make_arguments(fn: dict[str, Any], i: int) -> dict[str, Any]:
    params = fn.get("parameters")
    params = params if isinstance(params, dict) else {}
    props = params.get("properties")
    props = props if isinstance(props, dict) else {}
    if not props:
        return {}
    args: dict[str, Any] = {}
    for name, schema in props.items():
        schema = schema if isinstance(schema, dict) else {}
        kind = schema.get("type")
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            args[name] = schema["enum"][i % len(schema["enum"])]
        elif kind == "integer":
            args[name] = i
        elif kind == "number":
            args[name] = i + 0.5
        elif kind == "boolean":
            args[name] = i % 2 == 0
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        elif name in ("city", "location"):
            args[name] = CITIES[i % len(CITIES)]
        else:
            args[name] = f"{name}-{i}"
    return args


def scripted_assistant(message: Any, where: str) -> dict[str, Any]:
    """An assistant message given by the test, in render form (arguments parsed to objects)."""
    if not isinstance(message, dict):
        raise bad_request(f"{where} must be an assistant message object")
    msg = normalize_messages([{**message, "role": "assistant"}])[0]
    return {k: v for k, v in msg.items() if v is not None}


@dataclass
class Script:
    mode: str = "tool_agent"
    tool_calls: int = 3
    parallel: int = 1
    tool_content: str | None = None
    final_content: str | None = None
    content: str | None = None
    reasoning: str | None = None
    message: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[Any] | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    strict_stability: bool = False

    @classmethod
    def from_json(cls, body: Any) -> Script:
        if not isinstance(body, dict):
            raise bad_request("script must be a JSON object")
        body = dict(body)
        if "turns" in body and "tool_calls" not in body:
            body["tool_calls"] = body.pop("turns")
        body.pop("turns", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(body) - known)
        if unknown:
            raise bad_request(f"unknown script keys {unknown}; known: {sorted(known)}")
        s = cls(**{k: v for k, v in body.items() if v is not None or k in ("tools",)})
        if s.mode not in SCRIPT_MODES:
            raise bad_request(f"script mode {s.mode!r} unknown; one of {list(SCRIPT_MODES)}")
        for name in ("tool_calls", "parallel"):
            v = getattr(s, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad_request(f"script {name} must be an integer >= 0")
        if s.parallel < 1:
            raise bad_request("script parallel must be >= 1")
        if s.mode == "fixed":
            scripted_assistant(s.message, "script message")
        if s.mode == "sequence":
            if not isinstance(s.messages, list) or not s.messages:
                raise bad_request("script mode 'sequence' needs a non-empty 'messages' list")
            for i, m in enumerate(s.messages):
                scripted_assistant(m, f"script messages[{i}]")
        if s.tools is not None:
            normalize_tools(s.tools)
        if not isinstance(s.chat_template_kwargs, dict):
            raise bad_request("script chat_template_kwargs must be an object")
        return s

    def to_json(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in self.__dataclass_fields__}

    def choose(self, conv: list[dict[str, Any]], tools: list[Any] | None) -> dict[str, Any]:
        n_asst = sum(1 for m in conv if m.get("role") == "assistant")
        if self.mode == "fixed":
            asst = scripted_assistant(self.message, "script message")
        elif self.mode == "sequence":
            assert self.messages is not None
            asst = scripted_assistant(
                self.messages[min(n_asst, len(self.messages) - 1)], "script messages[i]"
            )
        elif self.mode == "text":
            asst = {"role": "assistant", "content": self.content or "Hello from the test engine."}
        else:
            asst = self._tool_agent(conv, tools, n_asst)
        if self.reasoning is not None and "reasoning_content" not in asst:
            asst["reasoning_content"] = self.reasoning
        return asst

    def _tool_agent(
        self, conv: list[dict[str, Any]], tools: list[Any] | None, n_asst: int
    ) -> dict[str, Any]:
        last = conv[-1].get("role") if conv else None
        last_user = max((i for i, m in enumerate(conv) if m.get("role") == "user"), default=-1)
        calls_done = sum(
            1 for m in conv[last_user + 1 :] if m.get("role") == "assistant" and m.get("tool_calls")
        )
        if last in ("user", "tool") and calls_done < self.tool_calls:
            fn = next((f for f in map(_function_of, tools or []) if f is not None), None)
            fn = fn or DEFAULT_TOOL["function"]
            calls = [
                {
                    "id": f"call{n_asst % 1000:03d}{k % 100:02d}",
                    "type": "function",
                    "function": {
                        "name": fn["name"],
                        "arguments": make_arguments(fn, n_asst * self.parallel + k),
                    },
                }
                for k in range(self.parallel)
            ]
            asst: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
            if self.tool_content is not None:
                asst["content"] = self.tool_content
            return asst
        total = sum(len(m.get("tool_calls") or []) for m in conv if m.get("role") == "assistant")
        content = self.final_content or f"Final answer after {total} tool calls."
        return {"role": "assistant", "content": content}


# --------------------------------------------------------------------------------------------
# Completion construction
# --------------------------------------------------------------------------------------------


@dataclass
class Completion:
    ids: list[int]
    message: dict[str, Any]  # render form (arguments are objects)
    stable: bool
    stable_detail: str | None


def _first_difference(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _next_messages(asst: dict[str, Any]) -> list[dict[str, Any]]:
    """What could follow ``asst`` in a TITO loop (used for the stability check)."""
    calls = asst.get("tool_calls") or []
    if calls:
        return [
            {"role": "tool", "tool_call_id": tc.get("id", f"call{i:05d}"), "content": "ok"}
            for i, tc in enumerate(calls)
        ]
    return [{"role": "user", "content": "ok"}]


def build_completion(
    model: Model,
    script: Script,
    conv: list[dict[str, Any]],
    tools: list[Any] | None,
    ctk: dict[str, Any] | None,
) -> Completion:
    asst = script.choose(conv, tools)
    try:
        prefix = model.render(conv, tools, add_generation_prompt=True, ctk=ctk)
    except TemplateFailure as exc:
        raise bad_request(f"chat template failed on the request messages: {exc}") from exc
    try:
        full = model.render([*conv, asst], tools, add_generation_prompt=False, ctk=ctk)
    except TemplateFailure as exc:
        raise script_error(
            "template_rejected_scripted_message",
            f"the chat template raised on the scripted assistant message {asst!r}: {exc}",
        ) from exc
    if not full.startswith(prefix):
        i = _first_difference(prefix, full)
        raise script_error(
            "not_prefix_stable",
            "render(conv + [assistant]) does not start with render(conv, "
            f"add_generation_prompt=True); first difference at char {i}: "
            f"prompt {prefix[max(0, i - 40) : i + 40]!r} vs full {full[max(0, i - 40) : i + 40]!r}",
        )
    turn = full[len(prefix) :]
    ends = [(turn.find(s), s) for s in model.stop_strs.values() if s and turn.find(s) >= 0]
    if not ends:
        raise script_error(
            "no_stop_token_in_rendered_turn",
            f"the rendered assistant turn {turn[:200]!r} contains no stop token "
            f"{sorted(model.stop_strs.values())}",
        )
    pos, stop_str = min(ends)
    turn = turn[: pos + len(stop_str)]
    ids_prefix = model.encode(prefix)
    ids_all = model.encode(prefix + turn)
    if ids_all[: len(ids_prefix)] != ids_prefix:
        raise script_error(
            "token_boundary_merge",
            "encode(prompt + turn) does not extend encode(prompt): a BPE merge crosses the "
            f"prompt/turn boundary at {turn[:40]!r}",
        )
    ids = ids_all[len(ids_prefix) :]
    if not ids or ids[-1] not in model.stop_set:
        raise script_error(
            "no_stop_token_in_rendered_turn",
            f"the encoded turn does not end in a stop id {model.stop_ids}: {ids[-5:]}",
        )
    stable, detail = True, None
    nxt = [*conv, asst, *_next_messages(asst)]
    try:
        again = model.render(nxt, tools, add_generation_prompt=True, ctk=ctk)
        if not again.startswith(prefix + turn):
            i = _first_difference(prefix + turn, again)
            stable = False
            detail = (
                f"the next turn re-renders this one differently at char {i}: "
                f"{(prefix + turn)[max(0, i - 30) : i + 30]!r} vs "
                f"{again[max(0, i - 30) : i + 30]!r}"
            )
    except TemplateFailure as exc:
        stable, detail = False, f"the next turn does not render: {exc}"
    if not stable and script.strict_stability:
        raise script_error("history_unstable", detail or "history unstable")
    return Completion(ids=ids, message=asst, stable=stable, stable_detail=detail)


def fake_logprob(token_id: int, position: int) -> float:
    h = hashlib.blake2b(f"{token_id}:{position}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "little") / 2.0**64
    return -round(0.0005 + 3.0 * u**3, 6)


# --------------------------------------------------------------------------------------------
# Ids-only conversations (for /inference/v1/generate)
# --------------------------------------------------------------------------------------------

MARKER = "QQMARK{}QQ"
MARKER_RE = re.compile(r"QQMARK(\d+)QQ")


@dataclass
class StoredTurn:
    conv: list[dict[str, Any]]  # ends with the scripted assistant message
    tools: list[Any] | None
    ctk: dict[str, Any]


def _digest_at_cuts(ids: list[int], cuts: list[int]) -> list[bytes]:
    """blake2b digests of ids[:cut] for every cut (ascending), in one pass over the ids."""
    h = hashlib.blake2b(digest_size=16)
    out, done = [], 0
    for cut in cuts:
        h.update(array("q", ids[done:cut]).tobytes())
        done = cut
        out.append(h.copy().digest())
    return out


class PrefixStore:
    """prompt + completion ids (as a digest) -> the conversation they render; LRU-bounded."""

    def __init__(self, stop_set: frozenset[int], max_entries: int = 8192) -> None:
        self.stop_set = stop_set
        self.entries: OrderedDict[bytes, StoredTurn] = OrderedDict()
        self.max_entries = max_entries

    def add(self, ids: list[int], turn: StoredTurn) -> None:
        if not ids or ids[-1] not in self.stop_set or self.max_entries <= 0:
            return  # truncated turns are never bridged from
        key = _digest_at_cuts(ids, [len(ids)])[0]
        self.entries[key] = turn
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def lookup(self, ids: list[int]) -> tuple[int, StoredTurn] | None:
        cuts = [i + 1 for i, t in enumerate(ids[:-1]) if t in self.stop_set]
        for cut, key in reversed(list(zip(cuts, _digest_at_cuts(ids, cuts), strict=True))):
            hit = self.entries.get(key)
            if hit is not None:
                self.entries.move_to_end(key)
                return cut, hit
        return None

    def clear(self) -> None:
        self.entries.clear()


def _pattern(template_text: str) -> re.Pattern[str]:
    parts = MARKER_RE.split(template_text)
    out, seen = [], set()
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.escape(part))
        elif part in seen:
            out.append(f"(?P=m{part})")
        else:
            seen.add(part)
            out.append(f"(?P<m{part}>.*?)")
    return re.compile("".join(out), re.DOTALL)


def _fill(tail: list[dict[str, Any]], match: re.Match[str]) -> list[dict[str, Any]]:
    out = []
    for m in tail:
        m = dict(m)
        found = MARKER_RE.fullmatch(str(m.get("content", "")))
        if found:
            m["content"] = match.group(f"m{found.group(1)}")
        out.append(m)
    return out


def resolve_ids(
    model: Model, store: PrefixStore, script: Script, ids: list[int]
) -> tuple[list[dict[str, Any]], list[Any] | None, dict[str, Any], dict[str, Any]]:
    """(conversation, tools, template kwargs, how) for a prompt given as ids only."""
    hit = store.lookup(ids)
    if hit is not None:
        cut, prev = hit
        bridge = model.decode(ids[cut:])
        try:
            before = model.render(prev.conv, prev.tools, add_generation_prompt=False, ctk=prev.ctk)
        except TemplateFailure as exc:
            raise script_error(
                "ids_not_understood", f"stored conversation re-render: {exc}"
            ) from exc
        stop_str = model.stop_strs.get(ids[cut - 1], "")
        anchor = before.rfind(stop_str) + len(stop_str) if stop_str in before else -1
        last = prev.conv[-1]
        call_ids = [tc.get("id") for tc in last.get("tool_calls") or []]
        tails: list[list[dict[str, Any]]] = []
        if call_ids:
            tools_tail = [
                {"role": "tool", "tool_call_id": cid, "content": MARKER.format(i)}
                for i, cid in enumerate(call_ids)
            ]
            tails.append(tools_tail)
            tails.append([*tools_tail, {"role": "user", "content": MARKER.format(len(call_ids))}])
        tails.append([{"role": "user", "content": MARKER.format(0)}])
        if anchor >= 0:
            for tail in tails:
                try:
                    full = model.render(
                        prev.conv + tail, prev.tools, add_generation_prompt=True, ctk=prev.ctk
                    )
                except TemplateFailure:
                    continue
                if not full.startswith(before[:anchor]):
                    continue
                m = _pattern(full[anchor:]).fullmatch(bridge)
                if m:
                    how = {
                        "from": "prefix",
                        "prefix_len": cut,
                        "tail_roles": [t["role"] for t in tail],
                    }
                    return prev.conv + _fill(tail, m), prev.tools, prev.ctk, how
        raise script_error(
            "ids_not_understood",
            f"token_ids[:{cut}] is a previous completion of this engine, but the remaining "
            f"{len(ids) - cut} ids ({bridge[:120]!r}...) are not the template's rendering of "
            f"tool results for {call_ids} (optionally + one user message) or of one user message",
        )
    text = model.decode(ids)
    tool_options = [script.tools if script.tools is not None else [DEFAULT_TOOL], None]
    convs = [
        [{"role": "user", "content": MARKER.format(0)}],
        [
            {"role": "system", "content": MARKER.format(0)},
            {"role": "user", "content": MARKER.format(1)},
        ],
    ]
    for tools in tool_options:
        for conv in convs:
            try:
                full = model.render(
                    conv, tools, add_generation_prompt=True, ctk=script.chat_template_kwargs
                )
            except TemplateFailure:
                continue
            m = _pattern(full).fullmatch(text)
            if m:
                how = {"from": "fresh", "tail_roles": [c["role"] for c in conv]}
                how["tools"] = (
                    None if tools is None else [(_function_of(t) or {}).get("name") for t in tools]
                )
                return _fill(conv, m), tools, dict(script.chat_template_kwargs), how
    raise script_error(
        "ids_not_understood",
        "no previous completion of this engine prefixes token_ids (looked up after each stop "
        "token), and the decoded prompt is not [user] or [system, user] rendered with the "
        'script\'s tools or no tools; set POST /_admin/script {"tools": [...], '
        '"chat_template_kwargs": {...}} to what the client renders with. Decoded prompt '
        f"starts {text[:160]!r}",
    )


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------

STATUS_FAULTS = {"http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504}
BODY_FAULTS = (
    "missing_token_ids",
    "missing_prompt_token_ids",
    "short_logprobs",
    "long_logprobs",
    "null_logprob",
    "oov_token_id",
    "no_stop_token",
)
WIRE_FAULTS = ("delay", "stall", "reset", "drop", "truncated_json", "malformed_json", "status")
FAULT_MODES = tuple(STATUS_FAULTS) + WIRE_FAULTS + BODY_FAULTS
COMPLETION_PATHS = ("/v1/chat/completions", "/v1/chat/completions/tokens", "/inference/v1/generate")


def parse_fault(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise bad_request('a fault must be an object like {"mode": "http_503", "count": 1}')
    mode = obj.get("mode")
    if mode not in FAULT_MODES:
        raise bad_request(f"fault mode {mode!r} unknown; one of {list(FAULT_MODES)}")
    count = obj.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise bad_request("fault count must be an integer >= 1")
    fault: dict[str, Any] = {"mode": mode, "count": count, "path": obj.get("path")}
    if fault["path"] is not None and not isinstance(fault["path"], str):
        raise bad_request("fault path must be a string")
    if mode == "status":
        status = obj.get("status")
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise bad_request("fault mode 'status' needs \"status\": an int in 400..599")
        fault["status"] = status
    if mode in STATUS_FAULTS:
        fault["status"] = STATUS_FAULTS[mode]
    if mode in ("status", *STATUS_FAULTS):
        if obj.get("body") is not None and not isinstance(obj["body"], str):
            raise bad_request("fault body must be a string")
        fault["body"] = obj.get("body")
    if mode in ("delay", "stall"):
        seconds = obj.get("seconds", 1.0)
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise bad_request("fault seconds must be a number >= 0")
        fault["seconds"] = float(seconds)
    return fault


def parse_random(obj: Any) -> dict[str, Any] | None:
    """The ``random`` fault setting: ``{"rate", "modes", "seed", "seconds"}`` or None (off)."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise bad_request('random faults must be an object like {"rate": 0.05, "modes": [...]}')
    rate = obj.get("rate")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise bad_request("random fault rate must be a number in [0, 1]")
    modes = obj.get("modes")
    if not isinstance(modes, list) or not modes or "status" in modes:
        raise bad_request("random fault modes must be a non-empty list of modes (not 'status')")
    templates = [
        parse_fault(
            {"mode": m, "seconds": obj.get("delay_seconds" if m == "delay" else "seconds", 1.0)}
        )
        for m in modes
    ]
    seed = obj.get("seed", 0)
    if not isinstance(seed, int):
        raise bad_request("random fault seed must be an integer")
    return {
        "rate": float(rate),
        "modes": modes,
        "seed": seed,
        "templates": templates,
        "rng": random.Random(seed),
    }


def mutate_body(payload: dict[str, Any], mode: str, model: Model, generate: bool) -> None:
    choice = payload["choices"][0]
    ids = choice.get("token_ids")
    if ids is None:
        ids = []
    lp = choice.get("logprobs") or {}
    content = lp.get("content") if isinstance(lp, dict) else None
    if mode == "missing_token_ids":
        choice.pop("token_ids", None)
    elif mode == "missing_prompt_token_ids":
        payload.pop("prompt_token_ids", None)
    elif mode in ("short_logprobs", "long_logprobs", "null_logprob"):
        if content is None:
            content = [{"token_id": t, "logprob": -0.5, "rank": 1} for t in ids]
            choice["logprobs"] = {"content": content}
        if mode == "short_logprobs":
            del content[-1:]
        elif mode == "long_logprobs":
            content.append(dict(content[-1]) if content else {"token": "x", "logprob": -0.5})
        elif content:
            content[len(content) // 2]["logprob"] = None
    elif mode == "oov_token_id":
        bad = model.vocab_size + 12345
        if ids:
            ids[0] = bad
            if content and "token_id" in content[0]:  # vLLM 0.32's tokens mode
                content[0]["token_id"] = bad
            elif content:
                content[0]["token"] = f"token_id:{bad}" if generate else ""
                content[0]["bytes"] = []
    elif mode == "no_stop_token":
        if ids and ids[-1] in model.stop_set:
            ids.pop()
            if content:
                content.pop()
            usage = payload.get("usage") or {}
            if "completion_tokens" in usage:
                usage["completion_tokens"] -= 1
                usage["total_tokens"] -= 1


# --------------------------------------------------------------------------------------------
# Engine state and request handling
# --------------------------------------------------------------------------------------------

REDACTED_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key", "api-key")


@dataclass
class Settings:
    served_names: list[str]
    max_model_len: int
    api_key: str | None
    scheduling_policy: str
    disabled_routes: set[str]
    version: str
    max_recorded: int
    prefix_store_size: int
    # vLLM >= 0.32 answers 403 on /inference/v1/generate unless started with --enable-scale-out
    scale_out: bool = True
    # "tokens": vLLM 0.32's logprob entries ({"token_id", "logprob", "rank", "top_logprobs"}),
    # prompt ids echoed only with return_token_ids; "labels": prime-rl's and older vLLM's
    # ({"token": "token_id:N", ...}), prompt ids always echoed
    generate_shape: str = "tokens"


class Engine:
    def __init__(self, model: Model, settings: Settings) -> None:
        self.model = model
        self.s = settings
        self.script = Script()
        self.store = PrefixStore(model.stop_set, settings.prefix_store_size)
        self.faults: list[dict[str, Any]] = []
        self.random_faults: dict[str, Any] | None = None
        self.injected: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.seq = 0
        self.last_activity = time.monotonic()
        self.created = int(time.time())

    # -- shared validation --------------------------------------------------------------------
    def check_model(self, body: dict[str, Any]) -> str:
        name = body.get("model")
        if name is None:
            return self.s.served_names[0]
        if name not in self.s.served_names:
            raise ApiError(404, f"The model `{name}` does not exist.", "NotFoundError")
        return str(name)

    def check_common(self, body: dict[str, Any]) -> None:
        salt = body.get("cache_salt")
        if salt is not None and (not isinstance(salt, str) or not salt):
            raise bad_request("Parameter 'cache_salt' must be a non-empty string if provided.")
        prio = body.get("priority", 0)
        if prio is None:
            prio = 0
        if not isinstance(prio, int) or isinstance(prio, bool):
            raise bad_request("'priority' must be an integer")
        if prio != 0 and self.s.scheduling_policy != "priority":
            raise bad_request(f"Got priority {prio} but Priority scheduling is not enabled.")
        if body.get("stream"):
            raise bad_request("stream=true is not supported by the test engine")

    def check_ids(self, ids: Any, name: str) -> list[int]:
        if not isinstance(ids, list) or not ids:
            raise bad_request(f"'{name}' must be a non-empty list of token ids")
        for t in ids:
            if not isinstance(t, int) or isinstance(t, bool):
                raise bad_request(f"'{name}' must contain integers only")
        top = max(ids)
        if top >= self.model.vocab_size or min(ids) < 0:
            bad = top if top >= self.model.vocab_size else min(ids)
            raise bad_request(f"Token id {bad} is out of vocabulary")
        return list(ids)

    def max_tokens(self, requested: Any, prompt_len: int) -> int:
        if prompt_len >= self.s.max_model_len:
            raise bad_request(
                f"This model's maximum context length is {self.s.max_model_len} tokens. "
                f"However, your request has {prompt_len} input tokens. Please reduce the length "
                "of the input messages.",
            )
        room = self.s.max_model_len - prompt_len
        if requested is None:
            return room
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise bad_request(f"max_tokens must be at least 1, got {requested}.")
        return min(requested, room)

    @staticmethod
    def stop_ids(value: Any) -> set[int]:
        if value is None:
            return set()
        if not isinstance(value, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in value
        ):
            raise bad_request("'stop_token_ids' must be a list of integers")
        return set(value)

    def finish(
        self, comp: Completion, max_tokens: int, extra_stops: set[int]
    ) -> tuple[list[int], str, int | None, bool]:
        """(ids, finish_reason, stop_reason, complete) after stop ids and max_tokens."""
        ids = list(comp.ids)
        stop_reason: int | None = None
        early = False
        for i, t in enumerate(ids[:-1]):
            if t in extra_stops:
                ids, stop_reason, early = ids[: i + 1], t, True
                break
        if len(ids) > max_tokens:
            return ids[:max_tokens], "length", None, False
        if early:
            return ids, "stop", stop_reason, False
        return ids, "tool_calls" if comp.message.get("tool_calls") else "stop", None, True

    def logprob_entries(
        self, ids: list[int], start: int, top_n: int, as_ids: bool
    ) -> list[dict[str, Any]]:
        out = []
        for i, t in enumerate(ids):
            lp = fake_logprob(t, start + i)
            tok = f"token_id:{t}" if as_ids else self.model.token_text(t)
            tops = []
            for j in range(top_n):
                alt = t if j == 0 else (t + 7919 * j) % self.model.vocab_size
                alt_tok = f"token_id:{alt}" if as_ids else self.model.token_text(alt)
                tops.append(
                    {
                        "token": alt_tok,
                        "logprob": lp if j == 0 else round(lp - 0.75 * j - 0.1, 6),
                        "bytes": list(alt_tok.encode("utf-8", errors="replace")),
                    }
                )
            out.append(
                {
                    "token": tok,
                    "logprob": lp,
                    "bytes": list(tok.encode("utf-8", errors="replace")),
                    "top_logprobs": tops,
                }
            )
        return out

    def token_entries(self, ids: list[int], start: int, top_n: int) -> list[dict[str, Any]]:
        """vLLM 0.32's tokens-mode entries: ``token_id`` and ``rank`` instead of a label; the
        sampled token leads ``top_logprobs`` (vLLM lists max(1, n) alternatives)."""
        out = []
        for i, t in enumerate(ids):
            lp = fake_logprob(t, start + i)
            tops = []
            for j in range(max(1, top_n)):
                alt = t if j == 0 else (t + 7919 * j) % self.model.vocab_size
                alp = lp if j == 0 else round(lp - 0.75 * j - 0.1, 6)
                tops.append({"token_id": alt, "logprob": alp, "rank": j + 1})
            out.append({"token_id": t, "logprob": lp, "rank": 1, "top_logprobs": tops})
        return out

    # -- routes -------------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        data: list[dict[str, Any]] = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "vllm",
                "root": self.model.dir,
                "parent": None,
                "max_model_len": self.s.max_model_len,
                "permission": [],
            }
            for name in self.s.served_names
        ]
        return {"object": "list", "data": data}

    def chat(self, body: dict[str, Any], rec: dict[str, Any], with_tokens: bool) -> dict[str, Any]:
        name = self.check_model(body)
        self.check_common(body)
        conv = normalize_messages(body.get("messages"))
        tools = normalize_tools(body.get("tools"))
        ctk = body.get("chat_template_kwargs") or {}
        if not isinstance(ctk, dict):
            raise bad_request("'chat_template_kwargs' must be an object")
        agp = body.get("add_generation_prompt", True)
        cfm = bool(body.get("continue_final_message", False))
        if agp and cfm:
            raise bad_request(
                "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
            )
        try:
            rendered = self.model.render(
                conv, tools, add_generation_prompt=bool(agp), continue_final_message=cfm, ctk=ctk
            )
        except TemplateFailure as exc:
            raise bad_request(f"chat template failed on the request messages: {exc}") from exc
        if with_tokens:
            if "tokens" not in body:
                raise bad_request("'tokens' is required on /v1/chat/completions/tokens")
            prompt_ids = self.check_ids(body.get("tokens"), "tokens")
        else:
            prompt_ids = self.model.encode(rendered)
        rec["prompt_ids"] = prompt_ids
        requested = body.get("max_completion_tokens")
        if requested is None:
            requested = body.get("max_tokens")
        max_tokens = self.max_tokens(requested, len(prompt_ids))
        extra_stops = self.stop_ids(body.get("stop_token_ids"))
        logprobs = body.get("logprobs") or False
        if not isinstance(logprobs, bool):
            raise bad_request("'logprobs' must be a boolean on chat completions")
        top = body.get("top_logprobs")
        if top is not None:
            if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
                raise bad_request("'top_logprobs' must be an integer in 0..20")
            if top > 0 and not logprobs:
                raise bad_request("when using `top_logprobs`, `logprobs` must be set to true.")
        n = body.get("n", 1) or 1
        if not isinstance(n, int) or n < 1:
            raise bad_request("'n' must be an integer >= 1")
        comp = build_completion(self.model, self.script, conv, tools, ctk)
        rec["history_stable"] = comp.stable
        rec["history_detail"] = comp.stable_detail
        ids, finish, stop_reason, complete = self.finish(comp, max_tokens, extra_stops)
        rec["completion_ids"] = ids
        if complete:
            self.store.add(prompt_ids + ids, StoredTurn([*conv, comp.message], tools, ctk))
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        ret_ids = bool(body.get("return_token_ids"))
        message = self.response_message(comp.message, ids, complete)
        choices = []
        for i in range(n):
            choices.append(
                {
                    "index": i,
                    "message": copy.deepcopy(message),
                    "logprobs": (
                        {"content": self.logprob_entries(ids, len(prompt_ids), top or 0, as_ids)}
                        if logprobs
                        else None
                    ),
                    "finish_reason": finish,
                    "stop_reason": stop_reason,
                    "token_ids": list(ids) if ret_ids else None,
                }
            )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": None,
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "total_tokens": len(prompt_ids) + len(ids) * n,
                "completion_tokens": len(ids) * n,
                "prompt_tokens_details": None,
            },
            "prompt_logprobs": None,
            "prompt_token_ids": list(prompt_ids) if ret_ids else None,
            "kv_transfer_params": None,
        }

    def response_message(
        self, asst: dict[str, Any], ids: list[int], complete: bool
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "tool_calls": [],
            "reasoning": None,
            "reasoning_content": None,
        }
        if not complete:
            msg["content"] = self.model.decode(ids, skip_special_tokens=True)
            return msg
        content = asst.get("content")
        msg["content"] = content if isinstance(content, str) and content != "" else None
        if not asst.get("tool_calls") and msg["content"] is None:
            msg["content"] = ""
        reasoning = asst.get("reasoning_content")
        msg["reasoning"] = msg["reasoning_content"] = reasoning
        for tc in asst.get("tool_calls") or []:
            fn = tc["function"]
            args = fn.get("arguments", {})
            msg["tool_calls"].append(
                {
                    "id": tc.get("id") or f"chatcmpl-tool-{uuid.uuid4().hex[:16]}",
                    "type": "function",
                    "function": {
                        "name": fn["name"],
                        "arguments": args
                        if isinstance(args, str)
                        else json.dumps(args, ensure_ascii=False),
                    },
                }
            )
        return msg

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        self.check_model(body)
        if "messages" in body:
            conv = normalize_messages(body.get("messages"))
            tools = normalize_tools(body.get("tools"))
            agp = body.get("add_generation_prompt", True)
            cfm = body.get("continue_final_message", False)
            if agp and cfm:
                raise bad_request(
                    "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
                )
            ctk = body.get("chat_template_kwargs") or {}
            if not isinstance(ctk, dict):
                raise bad_request("'chat_template_kwargs' must be an object")
            if body.get("chat_template") is not None:
                raise bad_request("'chat_template' overrides are not supported by the test engine")
            try:
                text = self.model.render(
                    conv,
                    tools,
                    add_generation_prompt=bool(agp),
                    continue_final_message=bool(cfm),
                    ctk=ctk,
                )
            except TemplateFailure as exc:
                raise bad_request(f"chat template failed: {exc}") from exc
            ids = self.model.encode(text, bool(body.get("add_special_tokens", False)))
        elif "prompt" in body:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise bad_request("'prompt' must be a string")
            ids = self.model.encode(prompt, bool(body.get("add_special_tokens", True)))
        else:
            raise bad_request("/tokenize needs 'messages' (chat) or 'prompt' (completion)")
        strs = self.model.tok.convert_ids_to_tokens(ids) if body.get("return_token_strs") else None
        return {
            "count": len(ids),
            "max_model_len": self.s.max_model_len,
            "tokens": ids,
            "token_strs": strs,
        }

    def detokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        self.check_model(body)
        ids = self.check_ids(body.get("tokens"), "tokens")
        return {"prompt": self.model.decode(ids)}

    def generate(self, body: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
        self.check_model(body)
        self.check_common(body)
        prompt_ids = self.check_ids(body.get("token_ids"), "token_ids")
        rec["prompt_ids"] = prompt_ids
        sp = body.get("sampling_params") or {}
        if not isinstance(sp, dict):
            raise bad_request("'sampling_params' must be an object")
        max_tokens = self.max_tokens(sp.get("max_tokens"), len(prompt_ids))
        extra_stops = self.stop_ids(sp.get("stop_token_ids"))
        n_lp = sp.get("logprobs")
        if n_lp is not None and (not isinstance(n_lp, int) or isinstance(n_lp, bool) or n_lp < 0):
            raise bad_request("sampling_params.logprobs must be an integer >= 0 or null")
        conv, tools, ctk, how = resolve_ids(self.model, self.store, self.script, prompt_ids)
        rec["derived"] = how
        comp = build_completion(self.model, self.script, conv, tools, ctk)
        rec["history_stable"] = comp.stable
        rec["history_detail"] = comp.stable_detail
        ids, finish, _, complete = self.finish(comp, max_tokens, extra_stops)
        if finish == "tool_calls":
            finish = "stop"  # /inference/v1/generate never says tool_calls (docs/wire.md B.2)
        rec["completion_ids"] = ids
        if complete:
            self.store.add(prompt_ids + ids, StoredTurn([*conv, comp.message], tools, ctk))
        tokens_mode = self.s.generate_shape == "tokens"
        if n_lp is None:
            logprobs = None
        elif tokens_mode:
            logprobs = {"content": self.token_entries(ids, len(prompt_ids), n_lp)}
        else:
            logprobs = {"content": self.logprob_entries(ids, len(prompt_ids), n_lp, True)}
        echo = not tokens_mode or body.get("return_token_ids") is True
        out: dict[str, Any] = {
            "request_id": body.get("request_id") or f"gen-{uuid.uuid4().hex}",
            "choices": [
                {
                    "index": 0,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                    "token_ids": list(ids),
                }
            ],
            "prompt_logprobs": None,
            "kv_transfer_params": None,
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "total_tokens": len(prompt_ids) + len(ids),
                "completion_tokens": len(ids),
                "prompt_tokens_details": None,
            },
            "prompt_token_ids": list(prompt_ids) if echo else None,
        }
        if tokens_mode:
            out["output_mode"] = "tokens"
            out["choices"][0]["stop_reason"] = None
            out["choices"][0]["routed_experts"] = None
        return out

    # -- faults and records -------------------------------------------------------------------
    def take_fault(self, path: str) -> dict[str, Any] | None:
        for f in self.faults:
            if f["count"] <= 0:
                continue
            if f["path"] is not None:
                if f["path"] != path:
                    continue
            elif f["mode"] in BODY_FAULTS and path not in COMPLETION_PATHS:
                continue
            f["count"] -= 1
            taken = dict(f)
            self.faults = [g for g in self.faults if g["count"] > 0]
            self.injected[taken["mode"]] = self.injected.get(taken["mode"], 0) + 1
            return taken
        rnd = self.random_faults
        if rnd is not None and rnd["rate"] > 0 and rnd["rng"].random() < rnd["rate"]:
            candidates = [
                t
                for t in rnd["templates"]
                if t["mode"] not in BODY_FAULTS or path in COMPLETION_PATHS
            ]
            if candidates:
                taken = dict(rnd["rng"].choice(candidates))
                self.injected[taken["mode"]] = self.injected.get(taken["mode"], 0) + 1
                return taken
        return None

    def record(self, request: web.Request, body: Any) -> dict[str, Any]:
        self.seq += 1
        headers: dict[str, str] = {}
        for k, v in request.headers.items():
            k = k.lower()
            headers[k] = "<redacted>" if k in REDACTED_HEADERS else v
        auth = request.headers.get("Authorization")
        rec: dict[str, Any] = {
            "seq": self.seq,
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": headers,
            "authorization_present": auth is not None,
            "authorization_valid": (
                None if self.s.api_key is None else auth == f"Bearer {self.s.api_key}"
            ),
            "body": body,
            "prompt_ids": None,
            "completion_ids": None,
            "status": None,
            "fault": None,
            "error": None,
            "history_stable": None,
            "derived": None,
        }
        if self.s.max_recorded > 0:
            self.requests.append(rec)
        if len(self.requests) > self.s.max_recorded:
            del self.requests[: len(self.requests) - self.s.max_recorded]
        return rec

    def reset(self) -> None:
        self.script = Script()
        self.store.clear()
        self.faults = []
        self.random_faults = None
        self.injected = {}
        self.requests = []


# --------------------------------------------------------------------------------------------
# aiohttp glue
# --------------------------------------------------------------------------------------------


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(payload, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise bad_request("request body must be a JSON object")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"JSON decode error: {exc}") from exc
    return body


def _abort(request: web.Request, reset: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()
    else:
        transport.close()


class Dropped(Exception):
    """The fault closed the connection: nothing more to send."""


def build_app(engine: Engine) -> web.Application:
    @web.middleware
    async def fastapi_like_404(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            return json_response({"detail": "Not Found"}, 404)
        except web.HTTPMethodNotAllowed:
            return json_response({"detail": "Method Not Allowed"}, 405)

    app = web.Application(middlewares=[fastapi_like_404], client_max_size=1 << 30)

    async def serve(request: web.Request, route: str) -> web.StreamResponse:
        engine.last_activity = time.monotonic()
        body: Any = None
        body_error: ApiError | None = None
        if request.method == "POST":
            try:
                body = await read_json(request)
            except ApiError as exc:
                body_error = exc
                body = {"_raw": (await request.read()).decode("utf-8", errors="replace")}
        rec = engine.record(request, body)
        if request.path in engine.s.disabled_routes:
            rec["status"] = 404
            return json_response({"detail": "Not Found"}, 404)
        if request.path == "/inference/v1/generate" and not engine.s.scale_out:
            # vLLM 0.32's answer, measured on a running server (docs/wire.md)
            rec["status"] = 403
            err = ApiError(
                403,
                "Scale-out endpoints are disabled. Restart vllm serve with --enable-scale-out "
                "to enable them.",
                "Forbidden",
            )
            return json_response(err.payload(), 403)
        fault = engine.take_fault(request.path)
        rec["fault"] = fault["mode"] if fault else None
        try:
            if fault and "status" in fault:
                rec["status"] = fault["status"]
                if fault.get("body") is not None:
                    return web.Response(
                        text=fault["body"], status=fault["status"], content_type="text/plain"
                    )
                err = ApiError(fault["status"], f"injected fault {fault['mode']}", "InjectedFault")
                return json_response(err.payload(), fault["status"])
            if fault and fault["mode"] == "drop":
                rec["status"] = "dropped"
                _abort(request, reset=False)
                raise Dropped
            if fault and fault["mode"] == "delay":
                await asyncio.sleep(fault["seconds"])
            if (
                engine.s.api_key is not None
                and request.path.startswith("/v1")
                and not rec["authorization_valid"]
            ):
                rec["status"] = 401
                return json_response({"error": "Unauthorized"}, 401)
            if body_error is not None:
                raise body_error
            if request.method == "POST" and not isinstance(body, dict):
                raise bad_request("request body must be a JSON object")
            payload = dispatch(route, body, rec)
            if fault and fault["mode"] in BODY_FAULTS:
                mutate_body(payload, fault["mode"], engine.model, route == "generate")
            data = json.dumps(payload, ensure_ascii=False).encode()
            rec["status"] = 200
            if fault and fault["mode"] == "truncated_json":
                return web.Response(body=data[: len(data) // 2], content_type="application/json")
            if fault and fault["mode"] == "malformed_json":
                return web.Response(
                    body=b'{"id": "broken", "choices": [{"index": 0,, "token_ids": [1 2 3]}',
                    content_type="application/json",
                )
            if fault and fault["mode"] in ("reset", "stall"):
                rec["status"] = fault["mode"]
                resp = web.StreamResponse(status=200)
                resp.content_type = "application/json"
                resp.content_length = len(data)
                await resp.prepare(request)
                await resp.write(data[: max(1, len(data) // 2)])
                # let the client read the headers and the half body (stall: and time out)
                await asyncio.sleep(fault.get("seconds", 0.2) if fault["mode"] == "stall" else 0.2)
                _abort(request, reset=True)
                raise Dropped
            return web.Response(body=data, content_type="application/json")
        except ApiError as exc:
            rec["status"] = exc.status
            rec["error"] = exc.payload()["error"]
            return json_response(exc.payload(), exc.status)
        except Dropped:
            raise asyncio.CancelledError from None
        except Exception as exc:  # a bug in the engine: say so, loudly
            rec["status"] = 500
            rec["error"] = {"message": repr(exc)}
            print(f"test engine: internal error on {request.path}: {exc!r}", file=sys.stderr)
            err = ApiError(500, f"test engine internal error: {exc!r}", "InternalServerError")
            return json_response(err.payload(), 500)

    def dispatch(route: str, body: Any, rec: dict[str, Any]) -> dict[str, Any]:
        if route == "models":
            return engine.models()
        if route == "chat":
            return engine.chat(body, rec, with_tokens=False)
        if route == "chat_tokens":
            return engine.chat(body, rec, with_tokens=True)
        if route == "tokenize":
            return engine.tokenize(body)
        if route == "detokenize":
            return engine.detokenize(body)
        if route == "generate":
            return engine.generate(body, rec)
        if route == "version":
            return {"version": engine.s.version}
        raise AssertionError(route)

    def route(name: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await serve(request, name)

        return handler

    async def health(request: web.Request) -> web.StreamResponse:
        engine.last_activity = time.monotonic()
        engine.record(request, None)["status"] = 200
        return web.Response(status=200)

    # -- admin --------------------------------------------------------------------------------
    def admin(fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            engine.last_activity = time.monotonic()
            try:
                body = await read_json(request) if request.method == "POST" else None
                return json_response(fn(body))
            except ApiError as exc:
                return json_response(exc.payload(), exc.status)

        return handler

    def set_script(body: Any) -> dict[str, Any]:
        engine.script = Script.from_json(body)
        return {"ok": True, "script": engine.script.to_json()}

    def get_script(_: Any) -> dict[str, Any]:
        return {"ok": True, "script": engine.script.to_json()}

    def get_requests(_: Any) -> dict[str, Any]:
        return {"count": len(engine.requests), "requests": engine.requests}

    def do_reset(_: Any) -> dict[str, Any]:
        engine.reset()
        return {"ok": True}

    def set_faults(body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and "random" in body and "mode" not in body:
            engine.random_faults = parse_random(body["random"])
            if "faults" not in body:
                return get_faults(None)
        if isinstance(body, list):
            items, replace = body, False
        elif isinstance(body, dict) and "faults" in body:
            items, replace = body["faults"], bool(body.get("replace", False))
            if not isinstance(items, list):
                raise bad_request("'faults' must be a list")
        else:
            items, replace = [body], False
        parsed = [parse_fault(f) for f in items]
        engine.faults = parsed if replace else engine.faults + parsed
        return get_faults(None)

    def get_faults(_: Any) -> dict[str, Any]:
        rnd = engine.random_faults
        return {
            "ok": True,
            "faults": engine.faults,
            "random": None if rnd is None else {k: rnd[k] for k in ("rate", "modes", "seed")},
            "injected": dict(engine.injected),
        }

    async def admin_reset_empty_body(request: web.Request) -> web.StreamResponse:
        engine.last_activity = time.monotonic()
        engine.reset()
        return json_response({"ok": True})

    app.router.add_get("/v1/models", route("models"))
    app.router.add_post("/v1/chat/completions", route("chat"))
    app.router.add_post("/v1/chat/completions/tokens", route("chat_tokens"))
    app.router.add_post("/tokenize", route("tokenize"))
    app.router.add_post("/detokenize", route("detokenize"))
    app.router.add_post("/inference/v1/generate", route("generate"))
    app.router.add_get("/version", route("version"))
    app.router.add_get("/health", health)
    app.router.add_post("/_admin/script", admin(set_script))
    app.router.add_get("/_admin/script", admin(get_script))
    app.router.add_get("/_admin/requests", admin(get_requests))
    app.router.add_post("/_admin/reset", admin_reset_empty_body)
    app.router.add_post("/_admin/faults", admin(set_faults))
    app.router.add_get("/_admin/faults", admin(get_faults))
    return app


# --------------------------------------------------------------------------------------------
# Process lifetime
# --------------------------------------------------------------------------------------------


def _parent_alive(parent_pid: int | None, initial_ppid: int) -> bool:
    if parent_pid is not None:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return os.getppid() == initial_ppid


async def run(engine: Engine, args: argparse.Namespace) -> None:
    initial_ppid = os.getppid()
    app = build_app(engine)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=2048)
    await site.start()
    port = int(runner.addresses[0][1])  # the bound port (--port 0 picks a free one)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    why = {"reason": "signal"}

    async def watchdog() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.25)
            if not _parent_alive(args.parent_pid, initial_ppid):
                why["reason"] = "parent process exited"
                stop.set()
            elif args.idle_timeout > 0 and (
                time.monotonic() - engine.last_activity > args.idle_timeout
            ):
                why["reason"] = f"idle for {args.idle_timeout:g}s"
                stop.set()

    dog = asyncio.create_task(watchdog())
    ready = {
        "event": "ready",
        "host": "127.0.0.1",
        "port": port,
        "pid": os.getpid(),
        "model": engine.s.served_names[0],
        "renderer": engine.model.renderer,
    }
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(json.dumps(ready))
        tmp.replace(args.port_file)
    print(json.dumps(ready), flush=True)
    await stop.wait()
    print(f"test engine: stopping ({why['reason']})", file=sys.stderr, flush=True)
    dog.cancel()
    await runner.cleanup()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="vLLM-compatible test engine (tests only)")
    p.add_argument("--model", required=True, help="folder with tokenizer.json + chat template")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed when ready)")
    p.add_argument(
        "--served-model-name",
        action="append",
        default=None,
        help="repeatable; default: the model folder's name",
    )
    p.add_argument("--max-model-len", type=int, default=32768)
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="exit after this many seconds without requests (0: never)",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process is gone (default: when getppid() changes)",
    )
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1")
    p.add_argument(
        "--scheduling-policy",
        choices=("priority", "fcfs"),
        default="priority",
        help="fcfs: a non-zero priority is a 400, as in vLLM",
    )
    p.add_argument(
        "--disable-route",
        action="append",
        default=[],
        help="answer 404 on this path (e.g. /v1/chat/completions/tokens)",
    )
    p.add_argument(
        "--stop-token-id",
        type=int,
        action="append",
        default=None,
        help="override the stop ids (default: eos + known stop tokens)",
    )
    p.add_argument("--version-string", default="0.20.0", help="what GET /version reports")
    p.add_argument(
        "--max-recorded-requests",
        type=int,
        default=10_000,
        help="keep the last N requests for GET /_admin/requests (0: record none)",
    )
    p.add_argument(
        "--prefix-store-size",
        type=int,
        default=8192,
        help="completions remembered for /inference/v1/generate (LRU; 0: none)",
    )
    p.add_argument("--port-file", default=None, help="also write the ready JSON to this file")
    p.add_argument(
        "--no-scale-out",
        dest="scale_out",
        action="store_false",
        help="answer 403 on /inference/v1/generate, as vLLM 0.32 without --enable-scale-out",
    )
    p.add_argument(
        "--generate-shape",
        choices=("tokens", "labels"),
        default="tokens",
        help="logprob entries of /inference/v1/generate: vLLM 0.32's tokens mode (token_id, "
        "rank; prompt ids only with return_token_ids) or prime-rl's token_id:N labels",
    )
    p.add_argument(
        "--renderer",
        choices=("auto", "transformers", "fasttito"),
        default=None,
        help="who renders and tokenizes (default: $FASTTITO_ENGINE_RENDERER, else auto: "
        "transformers when importable, else fasttito.Tokenizer)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = Model(args.model, args.stop_token_id, args.renderer)
    names = args.served_model_name or [Path(args.model).resolve().name]
    settings = Settings(
        served_names=names,
        max_model_len=args.max_model_len,
        api_key=args.api_key,
        scheduling_policy=args.scheduling_policy,
        disabled_routes=set(args.disable_route),
        scale_out=args.scale_out,
        generate_shape=args.generate_shape,
        version=args.version_string,
        max_recorded=args.max_recorded_requests,
        prefix_store_size=args.prefix_store_size,
    )
    asyncio.run(run(Engine(model, settings), args))


if __name__ == "__main__":
    main()
