"""A vLLM-compatible test engine: real HTTP on 127.0.0.1, transformers as the oracle.

Start it with ``fasttito.testing.start_engine`` (or ``python -m fasttito.testing.vllm_engine
--model DIR --port 0``, ``fasttito.testing.vllm_engine.server``). It speaks every vLLM route
fasttito uses (``fasttito.testing.vllm_engine.routes``) and answers each conversation with
the chat template's own rendering of a scripted assistant message: a tool-calling agent by
default (``fasttito.testing.vllm_engine.script``), rendered and encoded exactly
(``fasttito.testing.vllm_engine.completion``), with ids-only prompts mapped back to their
conversation (``fasttito.testing.vllm_engine.prefix``). An admin API replaces the script,
shows the recorded requests and injects faults (``fasttito.testing.vllm_engine.faults``,
``fasttito.testing.engine_core``).

It renders and tokenizes with ``transformers`` when that is importable
(``fasttito.testing.vllm_engine.model``): then no fasttito code produces what it answers, so
it is the independent side of every wire test. Without transformers (an installed wheel,
``fasttito demo``) it renders with ``fasttito.Tokenizer``.

The SGLang-compatible engine (``fasttito.testing.sglang_engine``) reuses the model, script,
completion and prefix modules.
"""

from __future__ import annotations

from fasttito.testing.engine_core.faults import STATUS_FAULTS, WIRE_FAULTS
from fasttito.testing.engine_core.http import REDACTED_HEADERS, Dropped, json_response
from fasttito.testing.vllm_engine.completion import Completion, build_completion, fake_logprob
from fasttito.testing.vllm_engine.errors import ApiError, bad_request, script_error
from fasttito.testing.vllm_engine.faults import (
    BODY_FAULTS,
    COMPLETION_PATHS,
    FAULT_MODES,
    mutate_body,
    parse_fault,
    parse_random,
)
from fasttito.testing.vllm_engine.messages import normalize_messages, normalize_tools
from fasttito.testing.vllm_engine.model import (
    KNOWN_STOP_STRINGS,
    LRU,
    RESERVED_TEMPLATE_KWARGS,
    Model,
    TemplateFailure,
)
from fasttito.testing.vllm_engine.prefix import PrefixStore, StoredTurn, resolve_ids
from fasttito.testing.vllm_engine.routes import build_app, read_json
from fasttito.testing.vllm_engine.script import (
    DEFAULT_TOOL,
    SCRIPT_MODES,
    Script,
    make_arguments,
    scripted_assistant,
)
from fasttito.testing.vllm_engine.server import main, parse_args, run
from fasttito.testing.vllm_engine.state import Engine, Settings

__all__ = [
    "BODY_FAULTS",
    "COMPLETION_PATHS",
    "DEFAULT_TOOL",
    "FAULT_MODES",
    "KNOWN_STOP_STRINGS",
    "LRU",
    "REDACTED_HEADERS",
    "RESERVED_TEMPLATE_KWARGS",
    "SCRIPT_MODES",
    "STATUS_FAULTS",
    "WIRE_FAULTS",
    "ApiError",
    "Completion",
    "Dropped",
    "Engine",
    "Model",
    "PrefixStore",
    "Script",
    "Settings",
    "StoredTurn",
    "TemplateFailure",
    "bad_request",
    "build_app",
    "build_completion",
    "fake_logprob",
    "json_response",
    "main",
    "make_arguments",
    "mutate_body",
    "normalize_messages",
    "normalize_tools",
    "parse_args",
    "parse_fault",
    "parse_random",
    "read_json",
    "resolve_ids",
    "run",
    "script_error",
    "scripted_assistant",
]
