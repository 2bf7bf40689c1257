"""A scripted token-in/token-out engine for the real NVIDIA Dynamo frontend (tests, demo).

Written against Dynamo's public Python backend API (``dynamo.common.backend``, PyPI
``ai-dynamo==1.6.1``): ``LLMEngine`` subclass + ``dynamo.common.backend.run.run``. The Dynamo
frontend (``python -m dynamo.frontend``) discovers it through file-based discovery and forwards
every ``/v1/chat/completions`` request to ``generate()`` as token ids (``nvext.token_data`` is
passed through unchanged; without it the frontend renders the chat template itself).

What it answers (deterministic, no model weights):

* It decodes the prompt ids with the model folder's tokenizer and picks an assistant turn:
  - if tools are rendered in the prompt (the first tool name found in JSON, XML or gpt-oss
    TypeScript tool specs, see ``first_tool_name``) and fewer
    than ``max_tool_calls`` (default 3) of this engine's tool calls appear since its last text
    answer, a call of that first tool with ``{"step": k}`` (k = 1, 2, 3);
  - otherwise a text answer (``TEXT_ANSWER``).
  Whether the prompt ends with a user turn or a tool result is detected from the template
  (tails of probe renders) and reported in ``engine_data.policy`` when ``echo_request`` is on.
* The completion ids are the template-exact rendering of that assistant turn: with transformers,
  ``full = apply_chat_template(conv + [asst])``, ``prefix = apply_chat_template(conv,
  add_generation_prompt=True)``, completion = ``full[len(prefix):]`` up to and including the
  first stop token (the model's eos, or any stop id of the request), encoded without special
  tokens. ``conv`` is a reference conversation of the same shape (user, then k-1 call/result
  pairs). If the rendered turn has no stop token, the eos id is appended, unless it already ends
  in a special token (gpt-oss ends a tool call with ``<|call|>``).
* Every completion token gets a deterministic logprob (``logprob_for``); chunks carry
  ``log_probs`` (and ``top_logprobs`` when the request asked for top-k) when the request asked
  for logprobs. The final chunk carries ``engine_data = {prompt_token_ids, completion_token_ids,
  completion_logprobs}`` (the frontend returns it as ``nvext.engine_data`` when the request lists
  ``engine_data`` in ``nvext.extra_fields``).
* ``stop_conditions.max_tokens`` truncates the completion (finish ``length``).

Control knobs (for fault injection). Each knob is read per request from, in order of precedence:
the JSON object in the file named by ``FASTTITO_DYN_CONTROL`` (re-read on every request; a
missing/empty file means no overrides), then the environment variable ``FASTTITO_DYN_<KNOB>``
(value parsed as JSON, else taken as a string), then the default:

    strip_stop      false  drop a trailing stop token from the completion ids (Dynamo SGLang bug
                           dyn #14302); finish_reason stays "stop"
    max_tool_calls  3      tool calls before the text answer
    delay           0      seconds to sleep before the first token
    token_delay     0      seconds to sleep between tokens
    error           null   make requests fail: "exception" (plain RuntimeError -> Dynamo
                           Unknown), "invalid_argument", "engine_shutdown", "cannot_connect",
                           "cancelled" (dynamo.llm.exceptions types), or "http:<code>"
                           (dynamo.llm.exceptions.HttpError)
    error_after     0      tokens streamed before the error is raised (mid-stream failure)
    fail_next       null   if set to N, only the next N requests fail; the count restarts
                           whenever the control file's content changes
    error_message   "injected fault"
    echo_request    false  also put the request as the engine saw it into engine_data.request
                           and the policy decision into engine_data.policy
    logprob_scale   1.0    multiply every logprob (0 gives 0.0 logprobs)
    oov_token_id    false  engine_data.completion_token_ids[0] = vocab size + 12345 (the
                           streamed chunks keep the real id, so the frontend still detokenizes)
    logprobs_delta  0      engine_data.completion_logprobs one entry longer (+N) or shorter (-N)
                           than the completion ids: misaligned logprobs
    drop_engine_data false no engine_data at all (the ids are missing from the response unless
                           the client asked for other token-id channels)
    fault_rate      1.0    probability that a request gets the body faults above (strip_stop,
                           oov_token_id, logprobs_delta, drop_engine_data); drawn per request
                           with random.Random(fault_seed)
    fault_seed      0

What the Dynamo 1.6.1 frontend makes of each ``error`` (observed; non-streamed requests):
    exception         500 {"message":"Internal server error","type":"Internal Server Error",
                          "code":500,"details":{"backend_status":500}}
    invalid_argument  400 {"message":"<error_message>","type":"Bad Request","code":400}
    http:<code>       <code> with the generic reason phrase; error_message is dropped, e.g.
                          429 {"message":"Too Many Requests","type":"Too Many Requests","code":429}
    cancelled         499 {"message":"Request cancelled","type":"Client Closed Request","code":499}
    engine_shutdown,  503 {"message":"Service temporarily unavailable",...}, AND the frontend
    cannot_connect        drops the worker from routing for ~3 s: requests meanwhile get 503
                          "Model `NAME` is not ready to serve requests yet. ..."
With ``error_after`` > 0: a non-streamed request still gets the 500; a streamed one gets HTTP
200, the first chunks, then ``data: {"error":{"message":"Internal server error","type":
"internal_server_error","code":500}}`` and ``data: [DONE]``.

Other environment: ``FASTTITO_DYN_PARENT_PID``: the engine exits when its parent process is
no longer that pid (watchdog; a test runner killed with SIGKILL leaves no engine behind).

Run: ``python -m fasttito.testing.dynamo_engine --model-path DIR --served-model-name NAME`` with
``DYN_FILE_KV`` etc. set (see ``dynamo_launch.py``, which does all of this).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

log = logging.getLogger("fasttito.dynamo_engine")

TEXT_ANSWER = "All done: the tools were called."
USER_PROBE = "FASTTITO_USER_PROBE_7f3a"
TOOL_PROBE = "FASTTITO_TOOL_PROBE_7f3a"
CONTROL_ENV = "FASTTITO_DYN_CONTROL"
PARENT_ENV = "FASTTITO_DYN_PARENT_PID"
KNOB_DEFAULTS: dict[str, Any] = {
    "strip_stop": False,
    "max_tool_calls": 3,
    "delay": 0.0,
    "token_delay": 0.0,
    "error": None,
    "error_after": 0,
    "fail_next": None,
    "error_message": "injected fault",
    "echo_request": False,
    "logprob_scale": 1.0,
    "oov_token_id": False,
    "logprobs_delta": 0,
    "drop_engine_data": False,
    "fault_rate": 1.0,
    "fault_seed": 0,
}
# where the first tool's name shows up in a rendered prompt: JSON tool specs (Qwen, Llama,
# Mistral, ...), XML specs (Qwen3-Coder), TypeScript-style specs (gpt-oss harmony)
_TOOL_NAME_RES = (
    re.compile(r'"name"\s*:\s*"([^"\\]+)"'),
    re.compile(r"<name>([^<\s]+)</name>"),
    re.compile(r"namespace functions \{.*?\btype (\w+)\s*=", re.DOTALL),
)


def first_tool_name(text: str) -> str | None:
    """The name of the first tool rendered in ``text`` (earliest match of any known format)."""
    best: tuple[int, str] | None = None
    for rx in _TOOL_NAME_RES:
        m = rx.search(text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), m.group(1))
    return best[1] if best else None


# --------------------------------------------------------------------------- the script


def logprob_for(token_id: int, position: int) -> float:
    """Deterministic fake logprob in [-2.0, -0.03125], a multiple of 1/32 (exact in f32)."""
    return -((token_id * 7 + position * 13) % 64 + 1) / 32.0


def tool_call_message(name: str, step: int) -> dict[str, Any]:
    """The assistant message of the engine's tool call number ``step`` (1-based)."""
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": f"call{step:05d}",  # 9 alphanumerics: Mistral's template insists
                "type": "function",
                "function": {"name": name, "arguments": {"step": step}},
            }
        ],
    }


def tool_result_message(name: str, step: int, content: str | None = None) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": f"call{step:05d}",
        "name": name,
        "content": content if content is not None else f"result {step}",
    }


def tool_spec(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "a tool",
            "parameters": {"type": "object", "properties": {"step": {"type": "integer"}}},
        },
    }


class Script:
    """Renders the scripted assistant turns with the model folder's tokenizer + chat template."""

    def __init__(self, model_dir: str | Path) -> None:
        from fasttito.testing.renderer import load_renderer

        # transformers when importable (the tests' oracle), else fasttito.Tokenizer
        # ($FASTTITO_ENGINE_RENDERER picks one; see fasttito.testing.renderer)
        self.tok, self.renderer = load_renderer(model_dir)
        eos = self.tok.eos_token_id
        if eos is None:
            raise ValueError(f"{model_dir}: tokenizer has no eos token")
        self.eos_id: int = int(eos)
        self.vocab_size = len(self.tok)
        self.special_ids = frozenset(int(i) for i in self.tok.all_special_ids) | frozenset(
            int(i) for i, t in self.tok.added_tokens_decoder.items() if t.special
        )
        self._cache: dict[tuple[str, int, frozenset[int]], list[int]] = {}
        self.user_tail = self._tail_after([{"role": "user", "content": USER_PROBE}], USER_PROBE)
        try:
            conv = [
                {"role": "user", "content": "q"},
                tool_call_message("probe_tool", 1),
                tool_result_message("probe_tool", 1, TOOL_PROBE),
            ]
            tools = [tool_spec("probe_tool")]
            self.tool_tail: str | None = self._tail_after(conv, TOOL_PROBE, tools)
        except Exception:  # a template without tool support
            self.tool_tail = None

    def render(
        self, conv: list[dict[str, Any]], tools: list[dict[str, Any]] | None, gen: bool
    ) -> str:
        out = self.tok.apply_chat_template(
            conv, tools=tools, add_generation_prompt=gen, tokenize=False
        )
        assert isinstance(out, str)
        return out

    def _tail_after(
        self, conv: list[dict[str, Any]], probe: str, tools: list[dict[str, Any]] | None = None
    ) -> str:
        text = self.render(conv, tools, gen=True)
        i = text.rfind(probe)
        if i < 0:
            raise ValueError("probe not rendered")
        return text[i + len(probe) :]

    # -- what the prompt looks like

    def last_turn(self, text: str) -> str:
        """``tool`` / ``user`` / ``other``: what the prompt ends with, judged by template tails."""
        if self.tool_tail and self.tool_tail != self.user_tail and text.endswith(self.tool_tail):
            return "tool"
        if self.user_tail and text.endswith(self.user_tail):
            return "user"
        return "other"

    def signature(self, name: str, step: int) -> str:
        """A stop-token-free piece of the rendered call ``step``, searched for in prompts."""
        text = self.tok.decode(self.completion("call", name, step, frozenset()))
        for stop in (self.tok.eos_token or "",):
            if stop and text.endswith(stop):
                text = text[: -len(stop)]
        if "</think>" in text:  # history re-renders may drop reasoning blocks
            text = text.split("</think>", 1)[1]
        return text.strip()

    def decide(self, prompt_ids: list[int], max_calls: int) -> dict[str, Any]:
        text = self.tok.decode(prompt_ids, skip_special_tokens=False)
        last = self.last_turn(text)
        name = first_tool_name(text)
        calls = 0
        if name is not None:
            answer_sig = TEXT_ANSWER
            seg = text[text.rfind(answer_sig) + len(answer_sig) :] if answer_sig in text else text
            while calls < 64 and self.signature(name, calls + 1) in seg:
                calls += 1
        if name is not None and calls < max_calls:
            return {
                "last_turn": last,
                "tool": name,
                "calls_so_far": calls,
                "action": "call",
                "step": calls + 1,
            }
        return {"last_turn": last, "tool": name, "calls_so_far": calls, "action": "answer"}

    # -- the completion

    def completion(
        self, action: str, name: str | None, step: int, stops: frozenset[int]
    ) -> list[int]:
        """Ids of the scripted turn: tool call ``step`` (action ``call``) or the text answer
        after ``step`` calls (action ``answer``), cut after the first stop id."""
        key = (f"{action}:{name}", step, stops)
        if key in self._cache:
            return list(self._cache[key])
        tools = [tool_spec(name)] if name else None
        conv: list[dict[str, Any]] = [{"role": "user", "content": "Please use the tools."}]
        n_prev = step - 1 if action == "call" else step
        for k in range(1, n_prev + 1):
            assert name is not None
            conv += [tool_call_message(name, k), tool_result_message(name, k)]
        if action == "call":
            assert name is not None
            asst = tool_call_message(name, step)
        else:
            asst = {"role": "assistant", "content": TEXT_ANSWER}
        prefix = self.render(conv, tools, gen=True)
        full = self.render([*conv, asst], tools, gen=False)
        if not full.startswith(prefix):
            raise RuntimeError(
                "chat template is not prefix-stable for an assistant turn; "
                f"prefix tail {prefix[-80:]!r}, full tail {full[-120:]!r}"
            )
        ids = self.tok.encode(full[len(prefix) :], add_special_tokens=False)
        stop_set = {self.eos_id, *stops}
        for i, t in enumerate(ids):
            if t in stop_set:
                ids = ids[: i + 1]
                break
        else:
            # no stop token rendered: a turn that ends in the template's own special terminator
            # (gpt-oss ends a tool call with <|call|>) keeps it, anything else gets the eos
            if not ids or ids[-1] not in self.special_ids:
                ids.append(self.eos_id)
        self._cache[key] = ids
        return list(ids)


# --------------------------------------------------------------------------- control


class Controls:
    """Per-request knob lookup: control file > FASTTITO_DYN_<KNOB> env > default."""

    def __init__(self) -> None:
        self.path = os.environ.get(CONTROL_ENV) or None
        self._lock = threading.Lock()
        self._digest = ""
        self._failed = 0

    def _file(self) -> tuple[dict[str, Any], str]:
        if not self.path:
            return {}, ""
        try:
            raw = Path(self.path).read_bytes()
        except FileNotFoundError:
            return {}, ""
        digest = hashlib.sha256(raw).hexdigest()
        if not raw.strip():
            return {}, digest
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: control file must hold a JSON object")
        return data, digest

    def snapshot(self) -> dict[str, Any]:
        data, digest = self._file()
        knobs: dict[str, Any] = {}
        for k, default in KNOB_DEFAULTS.items():
            if k in data:
                knobs[k] = data[k]
                continue
            env = os.environ.get(f"FASTTITO_DYN_{k.upper()}")
            if env is not None:
                try:
                    knobs[k] = json.loads(env)
                except json.JSONDecodeError:
                    knobs[k] = env
            else:
                knobs[k] = default
        with self._lock:
            if digest != self._digest:
                self._digest, self._failed = digest, 0
            knobs["_fail"] = False
            if knobs["error"]:
                limit = knobs["fail_next"]
                if limit is None or self._failed < int(limit):
                    self._failed += 1
                    knobs["_fail"] = True
        return knobs


def make_error(kind: str, message: str) -> BaseException:
    from dynamo.llm import exceptions as ex

    if kind.startswith("http:"):
        return ex.HttpError(int(kind.split(":", 1)[1]), message)
    table = {
        "invalid_argument": ex.InvalidArgument,
        "engine_shutdown": ex.EngineShutdown,
        "cannot_connect": ex.CannotConnect,
        "cancelled": ex.Cancelled,
        "unknown": ex.Unknown,
    }
    cls = table.get(kind)
    return cls(message) if cls is not None else RuntimeError(message)


# --------------------------------------------------------------------------- watchdog


def start_parent_watchdog(interval: float = 0.25) -> None:
    """Exit as soon as the parent named by FASTTITO_DYN_PARENT_PID is gone."""
    want = os.environ.get(PARENT_ENV)
    if not want:
        return
    ppid = int(want)

    def watch() -> None:
        while True:
            if os.getppid() != ppid:
                os._exit(3)
            time.sleep(interval)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


# --------------------------------------------------------------------------- the engine


def _engine_class() -> type:
    from dynamo.common.backend.engine import EngineConfig, LLMEngine, LlmRegistration
    from dynamo.common.backend.logprobs import parse_logprob_options
    from dynamo.common.backend.worker import WorkerConfig
    from dynamo.common.utils.token_ids import token_ids_to_list

    class ScriptedEngine(LLMEngine):  # type: ignore[misc, valid-type]
        def __init__(self, model_path: str, served_name: str, context_length: int) -> None:
            self.model_path = model_path
            self.served_name = served_name
            self.context_length = context_length
            self.script: Script | None = None
            self._fault_rng: random.Random | None = None
            self._fault_seed: int | None = None
            self.controls = Controls()

        @classmethod
        async def from_args(cls, argv: list[str] | None = None) -> tuple[Any, Any]:
            p = argparse.ArgumentParser(description="fasttito scripted Dynamo test engine")
            p.add_argument("--model-path", required=True)
            p.add_argument("--served-model-name", required=True)
            p.add_argument("--namespace", default="dynamo")
            p.add_argument("--component", default="fasttito")
            p.add_argument("--endpoint", default="generate")
            p.add_argument("--discovery-backend", default="file")
            p.add_argument("--request-plane", default="tcp")
            p.add_argument("--event-plane", default=None)
            p.add_argument("--context-length", type=int, default=32768)
            a = p.parse_args(argv)
            engine = cls(a.model_path, a.served_model_name, a.context_length)
            cfg = WorkerConfig(
                namespace=a.namespace,
                component=a.component,
                endpoint=a.endpoint,
                model_name=a.model_path,
                served_model_name=a.served_model_name,
                endpoint_types="chat,completions",
                discovery_backend=a.discovery_backend,
                request_plane=a.request_plane,
                event_plane=a.event_plane,
                enable_kv_routing=False,  # no KV events / load snapshots to publish
            )
            return engine, cfg

        async def start(self, worker_id: int) -> Any:
            del worker_id
            self.script = await asyncio.to_thread(Script, self.model_path)
            return EngineConfig(
                model=self.model_path,
                served_model_name=self.served_name,
                llm=LlmRegistration(context_length=self.context_length, kv_cache_block_size=16),
            )

        async def generate(
            self, request: dict[str, Any], context: Any
        ) -> AsyncGenerator[dict[str, Any], None]:
            assert self.script is not None
            script = self.script
            knobs = self.controls.snapshot()
            prompt = token_ids_to_list(request.get("token_ids")) or []
            stop_conditions = request.get("stop_conditions") or {}
            stops = frozenset(
                int(t)
                for key in ("stop_token_ids", "stop_token_ids_hidden")
                for t in (stop_conditions.get(key) or [])
            ) | frozenset(int(t) for t in (request.get("eos_token_ids") or []))
            decision = script.decide(prompt, int(knobs["max_tool_calls"]))
            step = decision.get("step", decision["calls_so_far"])
            ids = script.completion(decision["action"], decision["tool"], step, stops)
            finish = "stop"
            rate = float(knobs["fault_rate"])
            if rate < 1.0:
                seed = int(knobs["fault_seed"])
                if self._fault_rng is None or self._fault_seed != seed:
                    self._fault_rng, self._fault_seed = random.Random(seed), seed
                faulty = self._fault_rng.random() < rate
            else:
                faulty = True
            if not faulty:
                knobs = {
                    **knobs,
                    "strip_stop": False,
                    "oov_token_id": False,
                    "logprobs_delta": 0,
                    "drop_engine_data": False,
                }
            if knobs["strip_stop"] and ids and ids[-1] in (stops | {script.eos_id}):
                ids = ids[:-1]
            max_tokens = stop_conditions.get("max_tokens")
            if max_tokens is not None and len(ids) > int(max_tokens):
                ids, finish = ids[: int(max_tokens)], "length"
            scale = float(knobs["logprob_scale"])
            lps = [logprob_for(t, i) * scale for i, t in enumerate(ids)]
            top_k, _ = parse_logprob_options(request.get("output_options") or {})
            fail = knobs["_fail"]
            fail_at = int(knobs["error_after"]) if fail else -1
            log.info(
                "request: %d prompt ids, decision %s, %d completion ids",
                len(prompt),
                decision,
                len(ids),
            )

            if float(knobs["delay"]) > 0:
                await asyncio.sleep(float(knobs["delay"]))
            n = len(ids)
            for i in range(max(n, 1)):
                if fail and i >= fail_at:
                    raise make_error(str(knobs["error"]), str(knobs["error_message"]))
                if context.is_stopped():
                    yield {
                        "token_ids": [],
                        "index": 0,
                        "finish_reason": "cancelled",
                        "completion_usage": _usage(len(prompt), i),
                    }
                    return
                if i and float(knobs["token_delay"]) > 0:
                    await asyncio.sleep(float(knobs["token_delay"]))
                chunk: dict[str, Any] = {"token_ids": ids[i : i + 1], "index": 0}
                if top_k is not None and n:
                    chunk["log_probs"] = [lps[i]]
                    if top_k > 0:
                        chunk["top_logprobs"] = [_top(script, ids[i], lps[i], top_k)]
                if i == max(n, 1) - 1:
                    chunk["finish_reason"] = finish
                    chunk["completion_usage"] = _usage(len(prompt), n)
                    sent_ids, sent_lps = list(ids), list(lps)
                    if knobs["oov_token_id"] and sent_ids:
                        sent_ids[0] = script.vocab_size + 12345
                    delta = int(knobs["logprobs_delta"])
                    if delta < 0:
                        sent_lps = sent_lps[: max(0, len(sent_lps) + delta)]
                    elif delta > 0:
                        sent_lps += [-0.5] * delta
                    data: dict[str, Any] = {
                        "prompt_token_ids": prompt,
                        "completion_token_ids": sent_ids,
                        "completion_logprobs": sent_lps,
                    }
                    if knobs["echo_request"]:
                        data["policy"] = decision
                        data["request"] = _jsonable(request)
                    if not knobs["drop_engine_data"]:
                        chunk["engine_data"] = data
                else:
                    await asyncio.sleep(0)
                yield chunk

        async def cleanup(self) -> None:
            self.script = None

    return ScriptedEngine


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _top(script: Script, tid: int, lp: float, k: int) -> list[dict[str, Any]]:
    k = min(k, 20)
    out = [{"rank": 1, "token_id": tid, "token": script.tok.decode([tid]), "logprob": lp}]
    for r in range(1, k):
        alt = (tid + r) % script.vocab_size
        alt_token = script.tok.decode([alt])
        out.append({"rank": r + 1, "token_id": alt, "token": alt_token, "logprob": lp - r})
    return out


def _jsonable(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=lambda o: repr(o)))
    except (TypeError, ValueError):
        return repr(obj)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    start_parent_watchdog()
    from dynamo.common.backend.run import run

    run(_engine_class(), argv)


if __name__ == "__main__":
    main()
