# ruff: noqa: RUF001  (the look-alike Unicode characters are the point of these samples)
"""Conversation shapes for the chat-template parity suite.

Plain data only: every shape is a :class:`Shape` whose ``build(family)`` returns a *fresh*
:class:`Conversation` (messages, tools, template kwargs), so a test can never see another
test's mutations. Only the encoding of tool-call ``arguments`` depends on the family, and only
in shapes that are not about that encoding (see :func:`natural_json_args`).

The same shapes are rendered by ``transformers.apply_chat_template`` (the oracle) and by
``fasttito.Tokenizer.apply_chat_template``, and the outputs must be identical: the same text
and the same ids, or both must raise.

Conventions (see ``docs/models.md``):

* Tool-call ids are exactly 9 alphanumerics (``call00001``) everywhere, because the
  mistral-nemo template raises on any other id. Only ``tool_call_ids_not_9_chars`` breaks
  this rule on purpose (mistral-nemo must raise there, in both implementations).
* A shape applies to every model family unless it says otherwise. Template kwargs that only
  one family reads (``enable_thinking``, ``reasoning_effort``, ``date_string``...) are passed to
  every family too: the other templates must ignore them, which is part of parity.
* ``raises`` records the (family, shape) pairs for which transformers 5.23 raises, with the
  reason. The parity test then requires ``fasttito.TemplateError``; it also checks that the
  oracle still raises (or not) as recorded here, so a transformers upgrade that changes the
  oracle is reported instead of silently changing what is tested.
* ``skip`` is for pairs that are meaningless, with a documented reason. It is empty today:
  every documented quirk (llama-3.2 parallel calls, deepseek-r1 dict arguments, deepseek-v3
  tool calls on transformers 5.x, mistral-nemo ids) is a raise or a silent drop that fasttito
  must reproduce, so it is tested, not skipped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FAMILIES: tuple[str, ...] = (
    "qwen3",
    "qwen3-coder",
    "qwen2.5",
    "llama-3.2",
    "gpt-oss",
    "deepseek-v3",
    "deepseek-r1",
    "mistral-nemo",
)

Message = dict[str, Any]


@dataclass
class Conversation:
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Shape:
    name: str
    build_fn: Callable[[str], Conversation]
    add_generation_prompt: bool = True
    continue_final_message: bool | str = False
    # None: every family in FAMILIES.
    families: frozenset[str] | None = None
    # family -> documented reason why the pair is meaningless (not collected at all).
    skip: Mapping[str, str] = field(default_factory=dict)
    # family -> why transformers raises for this pair (fasttito must raise TemplateError).
    raises: Mapping[str, str] = field(default_factory=dict)
    # free-form tags, used to pick samples for the encode/decode and pydantic tests.
    tags: frozenset[str] = frozenset()

    def build(self, family: str) -> Conversation:
        """A fresh conversation for ``family`` (only tool-argument encoding depends on it)."""
        return copy.deepcopy(self.build_fn(family))

    def applies_to(self, family: str) -> bool:
        if self.families is not None and family not in self.families:
            return False
        return family not in self.skip

    def expected_to_raise(self, family: str) -> bool:
        return family in self.raises


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {
                    "type": "string",
                    "enum": ["celsius", "fahrenheit"],
                    "description": "Temperature unit (°C or °F)",
                },
            },
            "required": ["city"],
        },
    },
}

SEARCH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "search_code",
        "description": "Search the repository for code matching a query.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Text or regex to look for"},
                "max_results": {
                    "type": "integer",
                    "description": "How many hits to return",
                    "default": 10,
                },
            },
            "required": ["query"],
        },
    },
}

# A schema with the awkward parts: nested objects, arrays, enums with defaults, a nullable
# union type given as a list, boolean defaults (Python renders `False`, not `false`, through
# `|string`), an object without properties, non-ASCII text and trailing whitespace (trimmed by
# some templates).
TICKET_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "create_ticket",
        "description": "Create a ticket in the tracker.  \n",
        "parameters": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "Short title – one line"},
                "priority": {
                    "type": "string",
                    "enum": ["low", "normal", "high"],
                    "default": "normal",
                    "description": "Priority",
                },
                "labels": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Labels to attach",
                },
                "assignee": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "email": {"type": "string"},
                    },
                    "required": ["name"],
                    "description": "Who owns it",
                },
                "estimate_hours": {
                    "type": "number",
                    "nullable": True,
                    "description": "Estimate in hours",
                },
                "due": {"type": ["string", "null"], "description": "ISO date or null"},
                "urgent": {"type": "boolean", "default": False, "description": "Page on-call"},
                "metadata": {"type": "object", "description": "Free-form key/values"},
            },
            "required": ["title", "priority"],
        },
    },
}

ALL_TOOLS = [WEATHER_TOOL, SEARCH_TOOL]


def call(
    call_id: str, name: str, args: dict[str, Any], *, json_args: bool = False
) -> dict[str, Any]:
    """One OpenAI-style tool call. ``json_args`` passes ``arguments`` as a JSON string."""
    arguments: Any = json.dumps(args, ensure_ascii=False) if json_args else args
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def sys_msg(text: str) -> Message:
    return {"role": "system", "content": text}


def user(text: Any) -> Message:
    return {"role": "user", "content": text}


def assistant(text: Any = "", **extra: Any) -> Message:
    msg: Message = {"role": "assistant", "content": text}
    msg.update(extra)
    return msg


def tool_result(call_id: str, text: str, **extra: Any) -> Message:
    msg: Message = {"role": "tool", "tool_call_id": call_id, "content": text}
    msg.update(extra)
    return msg


def parts(*texts: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": t} for t in texts]


SYSTEM = "You are a helpful assistant."
WEATHER_RESULT = json.dumps({"city": "Paris", "temp_c": 21, "sky": "clear"})
WEATHER_RESULT_LYON = json.dumps({"city": "Lyon", "temp_c": 19, "sky": "cloudy"})

CJK = "请用中文回答：北京今天的天气怎么样？日本語のテキストも含めます。한국어 문장도 있습니다。"
EMOJI = (
    "Family: 👨‍👩‍👧‍👦 couple: 👩‍❤️‍💋‍👨 skin tones: 👋🏻👋🏼👋🏽👋🏾👋🏿 "
    "flags: 🇫🇷🇯🇵🏳️‍🌈 keycap: 1️⃣ professions: 🧑🏽‍💻👩🏿‍🚀 text+emoji: ok👍done✅"
)
RTL = (
    "مرحبا بالعالم، كيف حالك اليوم؟ "
    "שלום עולם, מה שלומך? "
    "mixed: the word \u202bשלום\u202c in LTR text, and \u200fعربي\u200e marks"
)
COMBINING = (
    "e\u0301 vs \u00e9, n\u0303, a\u030a, Z\u0351\u0307a\u0352\u0308l\u0336g\u0337o\u0338, "
    "Devanagari \u0915\u094d\u0937, Thai \u0e01\u0e33, "
    "zero-width:\u200b\u200c\u200d|, BOM:\ufeff|, "
    "ligature \ufb01, math \U0001d400\U0001d401, nbsp:\u00a0|"
)

# Special-token strings of every family, written literally inside message text.
SPECIAL_LITERALS = (
    "Qwen: <|im_start|>assistant\nfake<|im_end|> <|endoftext|> "
    "<think></think> <tool_call></tool_call>; "
    "Llama: <|begin_of_text|><|start_header_id|>system<|end_header_id|> <|eot_id|> <|eom_id|>; "
    "gpt-oss: <|start|>assistant<|channel|>final<|message|>x<|end|><|return|><|call|>; "
    "DeepSeek: <｜begin▁of▁sentence｜><｜User｜><｜Assistant｜><｜end▁of▁sentence｜>; "
    "Mistral: <s>[INST]hi[/INST]</s>[TOOL_CALLS][AVAILABLE_TOOLS]"
)


def _long_code(min_chars: int = 24_000) -> str:
    chunks: list[str] = []
    i = 0
    while sum(map(len, chunks)) < min_chars:
        chunks.append(
            f"def handler_{i:04d}(request, *, retries: int = {i % 5}) -> dict:\n"
            f'    """Handle request #{i}; returns a dict (see RFC-{1000 + i})."""\n'
            f"    if request.get('id') == {i}:\n"
            f"        return {{'ok': True, 'value': {i * 3.25!r}, 'tags': ['a', 'b\\t{i}']}}\n"
            f"\tfor j in range({i % 7}):  # tab-indented on purpose\n"
            f'\t\tlog.debug("step %d/%d", j, {i})\n'
            f"    return {{}}\n\n"
        )
        i += 1
    return "Please review this module:\n\n```python\n" + "".join(chunks) + "```\n"


def _long_log(min_chars: int = 22_000) -> str:
    lines: list[str] = []
    i = 0
    levels = ["INFO", "WARN", "DEBUG", "ERROR"]
    while sum(len(x) + 1 for x in lines) < min_chars:
        lines.append(
            f"2024-07-26T12:{i // 60 % 60:02d}:{i % 60:02d}.{i * 37 % 1000:03d}Z "
            f"[{levels[i % 4]:5}] worker-{i % 8} pid={4000 + i} "
            f'msg="request {i} took {i * 1.7:.1f}ms" path=/api/v1/items/{i}?q=%20x&y=1'
        )
        if i % 50 == 49:
            lines.append(
                "Traceback (most recent call last):\n"
                '  File "app.py", line 42, in run\n'
                "    raise ValueError('boom')"
            )
        i += 1
    return "\n".join(lines)


LONG_CODE = _long_code()
LONG_LOG = _long_log()

WHITESPACE = (
    "   leading spaces\n\n\n\n\tindented with a tab\n  \t mixed \t \n"
    "\r\nwindows line\r\n\n\n\ntrailing spaces   \n\n"
)


# --------------------------------------------------------------------------------------
# Conversation builders
# --------------------------------------------------------------------------------------


def natural_json_args(family: str) -> bool:
    """How a family's template wants tool-call ``arguments``: a JSON string for DeepSeek (R1
    concatenates them, a dict raises), a dict elsewhere (qwen3-coder iterates them as a mapping,
    a string raises). Shapes that are not *about* the argument encoding use this, so they keep
    their coverage on every family."""
    return family.startswith("deepseek")


def _tool_turn(
    family: str,
    *,
    content: Any = "",
    json_args: bool | None = None,
    drop_content: bool = False,
    system: bool = True,
) -> list[Message]:
    if json_args is None:
        json_args = natural_json_args(family)
    msgs: list[Message] = [sys_msg(SYSTEM)] if system else []
    msgs.append(user("What's the weather in Paris?"))
    a = assistant(
        content,
        tool_calls=[
            call(
                "call00001",
                "get_weather",
                {"city": "Paris", "unit": "celsius"},
                json_args=json_args,
            )
        ],
    )
    if drop_content:
        del a["content"]
    msgs.append(a)
    msgs.append(tool_result("call00001", WEATHER_RESULT))
    return msgs


def _parallel(*, json_args: bool) -> list[Message]:
    return [
        sys_msg(SYSTEM),
        user("Compare the weather in Paris and Lyon, and find where we parse the forecast."),
        assistant(
            "",
            tool_calls=[
                call("call00001", "get_weather", {"city": "Paris"}, json_args=json_args),
                call(
                    "call00002",
                    "get_weather",
                    {"city": "Lyon", "unit": "celsius"},
                    json_args=json_args,
                ),
                call(
                    "call00003",
                    "search_code",
                    {"query": "def parse_forecast", "max_results": 3},
                    json_args=json_args,
                ),
            ],
        ),
        tool_result("call00001", WEATHER_RESULT),
        tool_result("call00002", WEATHER_RESULT_LYON),
        tool_result("call00003", "src/forecast.py:12: def parse_forecast(raw: str) -> Forecast:"),
    ]


def _multi_turn(system: bool = True) -> list[Message]:
    msgs = [sys_msg(SYSTEM)] if system else []
    msgs += [
        user("Hi! Who are you?"),
        assistant("I'm an assistant. How can I help?"),
        user("Tell me a joke about compilers."),
        assistant("Why did the compiler break up with the linker? Too many unresolved references."),
        user("Another one, shorter."),
    ]
    return msgs


def _agent_loop(family: str) -> list[Message]:
    """Two rounds of tool use (one call each), an answer, then a follow-up question."""
    j = natural_json_args(family)
    return [
        sys_msg("You are a coding agent. Use tools when needed."),
        user("Find the forecast parser and tell me the weather in Paris."),
        assistant(
            "",
            tool_calls=[call("call00001", "search_code", {"query": "parse_forecast"}, json_args=j)],
        ),
        tool_result("call00001", "src/forecast.py:12: def parse_forecast(raw: str) -> Forecast:"),
        assistant(
            "Found it. Now the weather.",
            tool_calls=[call("call00002", "get_weather", {"city": "Paris"}, json_args=j)],
        ),
        tool_result("call00002", WEATHER_RESULT),
        assistant("The parser is in src/forecast.py, and Paris is 21 °C and clear."),
        user("Thanks! And Lyon?"),
    ]


def _reasoning_tools(family: str) -> list[Message]:
    return [
        sys_msg(SYSTEM),
        user("What's the weather in Paris?"),
        assistant(
            "",
            reasoning_content="The user wants the weather. I should call get_weather(city=Paris).",
            tool_calls=[
                call(
                    "call00001",
                    "get_weather",
                    {"city": "Paris"},
                    json_args=natural_json_args(family),
                )
            ],
        ),
        tool_result("call00001", WEATHER_RESULT),
    ]


EDGE_ARGS: dict[str, Any] = {
    # quotes, backslashes, HTML-ish characters (Python's json.dumps does not escape them;
    # minijinja's own tojson would), a closing tag, non-ASCII, a control character
    "query": (
        'a "quoted" \\path\\ <b>&amp;</b> it\'s\n\ttabbed </tool_call> '
        "\u00e9\u4e2d\U0001f600 \u0007"
    ),
    "max_results": 5,
    "z_key_before_a_key": True,
    # float formatting: Python writes 1e-07, 100.0, 2.5e+20, -0.0
    "floats": [1.5, 0.1, 1e-07, 100.0, 2.5e20, -0.0, 3.0e-5],
    "nested": {"b": None, "a": [1, {"x": False}], "empty": {}, "list": []},
}


# --------------------------------------------------------------------------------------
# Raise reasons (transformers 5.23), shared between shapes
# --------------------------------------------------------------------------------------

R_CONTINUE_AND_PROMPT = (
    "transformers rejects continue_final_message together with add_generation_prompt (ValueError)"
)
R_LIST_CONCAT = "template concatenates a string with list-of-parts content (TypeError)"
R_NONE = (
    "content=None is dropped by transformers 5.x and the template uses the missing content "
    "(UndefinedError)"
)
R_R1_DICT_ARGS = (
    "deepseek-r1 concatenates `arguments`, so dict arguments raise TypeError (documented)"
)
R_R1_NONE = (
    "deepseek-r1 on transformers 5.x: content=None is dropped, then "
    "`'<｜Assistant｜>' + content` fails (UndefinedError)"
)
R_V3_NONE = (
    "deepseek-v3 emits tool calls only for content=None, which transformers 5.x drops: "
    "UndefinedError (documented)"
)
R_CODER_STR_ARGS = (
    "qwen3-coder iterates `arguments|items`, so JSON-string arguments raise TypeError (documented)"
)
R_LLAMA_PARALLEL = "llama-3.2 raises on more than one tool call per turn (documented)"
R_MISTRAL_ALTERNATE = "mistral-nemo requires user/assistant alternation (raise_exception)"
R_MISTRAL_IDS = "mistral-nemo requires 9-character tool-call ids (documented, raise_exception)"
R_GPT_OSS_CHANNEL = "gpt-oss rejects <|channel|> tags inside assistant content (raise_exception)"

_PARTS_RAISE = {
    "qwen2.5": R_LIST_CONCAT,
    "qwen3-coder": R_LIST_CONCAT,
    "gpt-oss": R_LIST_CONCAT,
    "deepseek-v3": R_LIST_CONCAT,
    "deepseek-r1": R_LIST_CONCAT,
    "mistral-nemo": R_LIST_CONCAT,
}


def _shapes() -> list[Shape]:
    S = Shape
    T = frozenset
    return [
        # ---- plain chat -------------------------------------------------------------
        S("user_only", lambda f: Conversation([user("Hello world")]), tags=T({"pydantic"})),
        S("system_user", lambda f: Conversation([sys_msg(SYSTEM), user("What is 2+2?")])),
        S(
            "system_user_no_generation_prompt",
            lambda f: Conversation([sys_msg(SYSTEM), user("What is 2+2?")]),
            add_generation_prompt=False,
        ),
        S("multi_turn", lambda f: Conversation(_multi_turn()), tags=T({"pydantic"})),
        S("multi_turn_no_system", lambda f: Conversation(_multi_turn(system=False))),
        S(
            "ends_with_assistant",
            lambda f: Conversation([sys_msg(SYSTEM), user("What is 2+2?"), assistant("2+2 is 4.")]),
            add_generation_prompt=False,
        ),
        S(
            "ends_with_assistant_no_system",
            lambda f: Conversation([user("Name a prime."), assistant("7")]),
            add_generation_prompt=False,
        ),
        S(
            "continue_final_message",
            lambda f: Conversation(
                [
                    sys_msg(SYSTEM),
                    user("Write a haiku about rust."),
                    assistant("Iron slowly blooms"),
                ]
            ),
            add_generation_prompt=False,
            continue_final_message=True,
        ),
        S(
            "continue_final_message_trailing_whitespace",
            lambda f: Conversation(
                [user("Show me a Python hello world."), assistant("Sure:\n\n```python\n")]
            ),
            add_generation_prompt=False,
            continue_final_message=True,
        ),
        S(
            "continue_final_message_multi_turn",
            lambda f: Conversation(
                [*_multi_turn()[:-1], user("Count to five."), assistant("1, 2, 3,")]
            ),
            add_generation_prompt=False,
            continue_final_message=True,
        ),
        S(
            "continue_final_message_with_reasoning",
            lambda f: Conversation(
                [
                    user("What is 6*7?"),
                    assistant("6*7 is", reasoning_content="6*7 = 42, an easy product."),
                ]
            ),
            add_generation_prompt=False,
            continue_final_message=True,
        ),
        S(
            "continue_final_message_with_generation_prompt",
            lambda f: Conversation([user("Count to three."), assistant("1, 2,")]),
            add_generation_prompt=True,
            continue_final_message=True,
            raises=dict.fromkeys(FAMILIES, R_CONTINUE_AND_PROMPT),
        ),
        S(
            "system_mid_conversation",
            lambda f: Conversation(
                [
                    sys_msg(SYSTEM),
                    user("Hi"),
                    assistant("Hello!"),
                    sys_msg("From now on answer in French."),
                    user("How are you?"),
                ]
            ),
            raises={"mistral-nemo": R_MISTRAL_ALTERNATE},
        ),
        S(
            "consecutive_user_messages",
            lambda f: Conversation(
                [sys_msg(SYSTEM), user("First question."), user("Actually, a second one.")]
            ),
            raises={"mistral-nemo": R_MISTRAL_ALTERNATE},
        ),
        S(
            "assistant_content_empty_in_history",
            lambda f: Conversation(
                [user("Say nothing."), assistant(""), user("Now say something.")]
            ),
        ),
        S(
            "assistant_content_none_in_history",
            lambda f: Conversation(
                [user("Say nothing."), assistant(None), user("Now say something.")]
            ),
            # qwen3 (checks `content is string`) and llama-3.2 (`content|trim`) render it as empty.
            raises={
                "qwen2.5": R_NONE,
                "qwen3-coder": R_NONE,
                "gpt-oss": R_NONE,
                "deepseek-v3": R_NONE,
                "deepseek-r1": R_NONE,
                "mistral-nemo": R_NONE,
            },
            tags=T({"pydantic"}),
        ),
        # ---- list-of-parts content -------------------------------------------------
        # qwen3 renders non-string content as ''; llama-3.2 renders `content|trim`, i.e. the
        # Python repr of the list ("[{'type': 'text', ...}]").
        S(
            "list_of_parts_user",
            lambda f: Conversation(
                [sys_msg(SYSTEM), user(parts("Describe this:", " a red square."))]
            ),
            raises=_PARTS_RAISE,
        ),
        S(
            "list_of_parts_everywhere",
            lambda f: Conversation(
                [
                    {"role": "system", "content": parts("You are terse.")},
                    user(parts("Hi", "there")),
                    assistant(parts("Hello.")),
                    user(parts("Bye")),
                ]
            ),
            raises={
                **_PARTS_RAISE,
                "qwen3": "qwen3 concatenates a list-of-parts system message (TypeError)",
            },
        ),
        # ---- tool calls --------------------------------------------------------------
        S(
            "tools_defined_no_calls",
            lambda f: Conversation(_multi_turn(), tools=[WEATHER_TOOL, SEARCH_TOOL]),
        ),
        S("tools_empty_list", lambda f: Conversation([sys_msg(SYSTEM), user("Hi")], tools=[])),
        S(
            "tools_complex_schema",
            lambda f: Conversation(
                [sys_msg(SYSTEM), user("File a ticket: the build is red.")],
                tools=[TICKET_TOOL, WEATHER_TOOL],
            ),
        ),
        S(
            "tool_call_dict_args",
            lambda f: Conversation(_tool_turn(f, json_args=False), tools=ALL_TOOLS),
            raises={"deepseek-r1": R_R1_DICT_ARGS},
            tags=T({"pydantic"}),
        ),
        S(
            "tool_call_json_string_args",
            lambda f: Conversation(_tool_turn(f, json_args=True), tools=ALL_TOOLS),
            raises={"qwen3-coder": R_CODER_STR_ARGS},
            tags=T({"pydantic"}),
        ),
        S(
            "tool_call_content_none_dict_args",
            lambda f: Conversation(_tool_turn(f, content=None, json_args=False), tools=ALL_TOOLS),
            raises={"deepseek-r1": R_R1_NONE, "deepseek-v3": R_V3_NONE},
            tags=T({"pydantic"}),
        ),
        S(
            "tool_call_content_none_json_string_args",
            lambda f: Conversation(_tool_turn(f, content=None, json_args=True), tools=ALL_TOOLS),
            raises={
                "deepseek-r1": R_R1_NONE,
                "deepseek-v3": R_V3_NONE,
                "qwen3-coder": R_CODER_STR_ARGS,
            },
            tags=T({"pydantic"}),
        ),
        S(
            "tool_call_no_content_key",
            lambda f: Conversation(_tool_turn(f, drop_content=True), tools=ALL_TOOLS),
            raises={"deepseek-r1": R_R1_NONE, "deepseek-v3": R_V3_NONE},
        ),
        S(
            "tool_call_with_text_content",
            lambda f: Conversation(
                _tool_turn(f, content="Let me check that for you."), tools=ALL_TOOLS
            ),
        ),
        S(
            "tool_call_without_system",
            lambda f: Conversation(_tool_turn(f, system=False), tools=ALL_TOOLS),
        ),
        S(
            "tool_call_no_generation_prompt",
            lambda f: Conversation(_tool_turn(f), tools=ALL_TOOLS),
            add_generation_prompt=False,
        ),
        S(
            "tool_call_is_last_message",
            lambda f: Conversation(_tool_turn(f)[:-1], tools=ALL_TOOLS),
            add_generation_prompt=False,
        ),
        S(
            "parallel_tool_calls_dict_args",
            lambda f: Conversation(_parallel(json_args=False), tools=ALL_TOOLS),
            raises={"llama-3.2": R_LLAMA_PARALLEL, "deepseek-r1": R_R1_DICT_ARGS},
        ),
        S(
            "parallel_tool_calls_json_string_args",
            lambda f: Conversation(_parallel(json_args=True), tools=ALL_TOOLS),
            raises={"llama-3.2": R_LLAMA_PARALLEL, "qwen3-coder": R_CODER_STR_ARGS},
        ),
        S(
            "agent_loop_then_followup",
            lambda f: Conversation(_agent_loop(f), tools=ALL_TOOLS),
            tags=T({"pydantic"}),
        ),
        S(
            "tool_result_with_name_field",
            lambda f: Conversation(
                [*_tool_turn(f)[:-1], tool_result("call00001", "21 °C, clear", name="get_weather")],
                tools=ALL_TOOLS,
            ),
        ),
        S(
            "tool_call_ids_not_9_chars",
            lambda f: Conversation(
                [
                    user("Weather in Paris?"),
                    assistant(
                        "",
                        tool_calls=[
                            call(
                                "call_8f3a2b1c9d",
                                "get_weather",
                                {"city": "Paris"},
                                json_args=natural_json_args(f),
                            )
                        ],
                    ),
                    tool_result("call_8f3a2b1c9d", WEATHER_RESULT),
                ],
                tools=ALL_TOOLS,
            ),
            raises={"mistral-nemo": R_MISTRAL_IDS},
        ),
        S(
            "tool_args_json_edge_cases",
            lambda f: Conversation(
                [
                    user("Search for the tricky string."),
                    assistant(
                        "",
                        tool_calls=[
                            call(
                                "call00001",
                                "search_code",
                                EDGE_ARGS,
                                json_args=natural_json_args(f),
                            )
                        ],
                    ),
                    tool_result("call00001", "[]"),
                ],
                tools=ALL_TOOLS,
            ),
        ),
        S(
            "repeated_identical_user_messages_with_tools",
            lambda f: Conversation(
                [user("ping"), assistant("pong"), user("ping"), assistant("pong"), user("ping")],
                tools=[WEATHER_TOOL],
            ),
        ),
        # ---- reasoning ---------------------------------------------------------------
        S(
            "reasoning_content_last_assistant",
            lambda f: Conversation(
                [
                    sys_msg(SYSTEM),
                    user("What is 17*3?"),
                    assistant("17*3 = 51.", reasoning_content="17*3 = 10*3 + 7*3 = 30 + 21 = 51."),
                ]
            ),
            add_generation_prompt=False,
            tags=T({"pydantic"}),
        ),
        S(
            "reasoning_content_in_history",
            lambda f: Conversation(
                [
                    user("What is 17*3?"),
                    assistant("51.", reasoning_content="\n10*3 + 7*3 = 51.\n"),
                    user("And 17*4?"),
                ]
            ),
        ),
        S(
            "reasoning_content_with_tool_calls",
            lambda f: Conversation(_reasoning_tools(f), tools=ALL_TOOLS),
            tags=T({"pydantic"}),
        ),
        S(
            "reasoning_field_alias",
            lambda f: Conversation(
                [user("Think briefly: 2+3?"), assistant("5", reasoning="2+3=5")]
            ),
            add_generation_prompt=False,
        ),
        S(
            "reasoning_inline_think_tags",
            lambda f: Conversation(
                [
                    user("2+3?"),
                    assistant("<think>\nsimple addition\n</think>\n\n5"),
                    user("And 3+4?"),
                ]
            ),
        ),
        S(
            "reasoning_empty_string",
            lambda f: Conversation([user("2+3?"), assistant("5", reasoning_content="")]),
            add_generation_prompt=False,
        ),
        # ---- template kwargs (passed to every family; the others must ignore them) ----
        S(
            "kwarg_enable_thinking_false",
            lambda f: Conversation(_multi_turn(), kwargs={"enable_thinking": False}),
        ),
        S(
            "kwarg_enable_thinking_false_with_tools",
            lambda f: Conversation(
                _tool_turn(f), tools=ALL_TOOLS, kwargs={"enable_thinking": False}
            ),
        ),
        S(
            "kwarg_enable_thinking_true",
            lambda f: Conversation([user("Hi")], kwargs={"enable_thinking": True}),
        ),
        S(
            "kwarg_reasoning_effort_high",
            lambda f: Conversation(
                [sys_msg(SYSTEM), user("Prove it.")], kwargs={"reasoning_effort": "high"}
            ),
        ),
        S(
            "kwarg_gpt_oss_identity_builtin_tools",
            lambda f: Conversation(
                [user("Look it up.")],
                tools=[WEATHER_TOOL],
                kwargs={
                    "model_identity": "You are Gizmo, a friendly robot.",
                    "builtin_tools": ["browser", "python"],
                    "reasoning_effort": "low",
                },
            ),
        ),
        S(
            "kwarg_date_string",
            lambda f: Conversation(
                [sys_msg(SYSTEM), user("What day is it?")], kwargs={"date_string": "26 Jul 2024"}
            ),
        ),
        S(
            "kwarg_date_string_with_tools",
            lambda f: Conversation(
                _tool_turn(f), tools=ALL_TOOLS, kwargs={"date_string": "26 Jul 2024"}
            ),
        ),
        S(
            "kwarg_llama_tools_in_system",
            lambda f: Conversation(
                _tool_turn(f),
                tools=ALL_TOOLS,
                kwargs={"date_string": "26 Jul 2024", "tools_in_user_message": False},
            ),
        ),
        # ---- unicode -----------------------------------------------------------------
        S(
            "unicode_cjk",
            lambda f: Conversation(
                [
                    sys_msg("你是一个乐于助人的助手。"),
                    user(CJK),
                    assistant("北京今天晴，气温二十五度。"),
                    user("谢谢！"),
                ]
            ),
            tags=T({"pydantic"}),
        ),
        S(
            "unicode_emoji_zwj",
            lambda f: Conversation(
                [user(EMOJI), assistant("🎉" * 5 + " 👍🏽"), user("more " + EMOJI[:40])]
            ),
        ),
        S("unicode_rtl", lambda f: Conversation([sys_msg(SYSTEM), user(RTL)])),
        S(
            "unicode_combining_marks",
            lambda f: Conversation([user(COMBINING), assistant(COMBINING[::-1]), user("ok")]),
        ),
        S(
            "unicode_in_tool_args_and_results",
            lambda f: Conversation(
                [
                    user("Météo à Zürich et 東京?"),
                    assistant(
                        "",
                        tool_calls=[
                            call(
                                "call00001",
                                "get_weather",
                                {"city": "東京 🗼", "unit": "celsius"},
                                json_args=natural_json_args(f),
                            )
                        ],
                    ),
                    tool_result(
                        "call00001",
                        json.dumps(
                            {"city": "東京", "desc": "晴れ ☀️", "temp": "25°C"}, ensure_ascii=False
                        ),
                    ),
                ],
                tools=ALL_TOOLS,
            ),
        ),
        # ---- size and whitespace -----------------------------------------------------
        S("long_code_message", lambda f: Conversation([sys_msg(SYSTEM), user(LONG_CODE)])),
        S(
            "long_log_tool_result",
            lambda f: Conversation(
                [
                    user("Why does the worker fail?"),
                    assistant(
                        "",
                        tool_calls=[
                            call(
                                "call00001",
                                "search_code",
                                {"query": "worker logs"},
                                json_args=natural_json_args(f),
                            )
                        ],
                    ),
                    tool_result("call00001", LONG_LOG),
                ],
                tools=ALL_TOOLS,
            ),
        ),
        S(
            "whitespace_heavy",
            lambda f: Conversation(
                [
                    sys_msg("  system with spaces  \n"),
                    user(WHITESPACE),
                    assistant(WHITESPACE),
                    user("\n\n\tok\t\n"),
                ]
            ),
        ),
        S(
            "whitespace_only_content",
            lambda f: Conversation([user("   \n\t  "), assistant(" "), user("\n")]),
        ),
        # ---- message fields as real clients send them ------------------------------
        S(
            "openai_sdk_style_fields",
            # An OpenAI SDK ``model_dump()``: None-valued fields (dropped by transformers) and an
            # empty ``tool_calls`` list (kept: some templates test ``'tool_calls' in message``).
            lambda f: Conversation(
                [
                    {"role": "system", "content": SYSTEM, "name": None},
                    {"role": "user", "content": "Hi, I'm Ana.", "name": "ana"},
                    {
                        "role": "assistant",
                        "content": "Hello Ana!",
                        "refusal": None,
                        "annotations": [],
                        "audio": None,
                        "function_call": None,
                        "tool_calls": [],
                    },
                    {"role": "user", "content": "Weather?", "name": "ana"},
                ],
                tools=ALL_TOOLS,
            ),
            raises={
                "llama-3.2": "llama-3.2 tests `'tool_calls' in message`; `tool_calls: []` has "
                "length 0 (raise_exception)",
                "gpt-oss": "gpt-oss reads `tool_calls[0]` of an empty list (UndefinedError)",
                "mistral-nemo": "mistral-nemo counts a message with `tool_calls: []` as a tool "
                "call, so the user turns no longer alternate (raise_exception)",
            },
        ),
        S(
            "assistant_tool_calls_none",
            lambda f: Conversation(
                [user("Hi"), assistant("Hello!", tool_calls=None), user("Bye")], tools=ALL_TOOLS
            ),
        ),
        S(
            "thinking_field_alias",
            lambda f: Conversation([user("2+3?"), assistant("5", thinking="two plus three")]),
            add_generation_prompt=False,
        ),
        S(
            "continue_final_message_reasoning_field",
            lambda f: Conversation(
                [user("6*7?"), assistant("", reasoning_content="Let me multiply: 6*7")]
            ),
            add_generation_prompt=False,
            continue_final_message="reasoning_content",
            raises={
                fam: "transformers: the template never reads `reasoning_content` (ValueError)"
                for fam in FAMILIES
                if fam not in ("qwen3", "gpt-oss")
            },
        ),
        S(
            "tool_call_empty_args",
            lambda f: Conversation(
                [
                    user("List the tools."),
                    assistant(
                        "",
                        tool_calls=[
                            call("call00001", "search_code", {}, json_args=natural_json_args(f))
                        ],
                    ),
                    tool_result("call00001", ""),
                ],
                tools=ALL_TOOLS,
            ),
        ),
        S(
            "tool_result_list_of_parts",
            lambda f: Conversation(
                [
                    *_tool_turn(f)[:-1],
                    {"role": "tool", "tool_call_id": "call00001", "content": parts("21 °C")},
                ],
                tools=ALL_TOOLS,
            ),
            raises={"deepseek-v3": R_LIST_CONCAT, "deepseek-r1": R_LIST_CONCAT},
        ),
        S(
            "tool_without_parameters",
            lambda f: Conversation(
                [user("What time is it?")],
                tools=[
                    {
                        "type": "function",
                        "function": {"name": "get_time", "description": "Current time."},
                    },
                    WEATHER_TOOL,
                ],
            ),
            raises={
                "qwen3-coder": "qwen3-coder reads `tool.parameters.properties` (UndefinedError)"
            },
        ),
        S(
            "tool_with_return_and_int_enum",
            lambda f: Conversation(
                [user("Roll a die.")],
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "roll_die",
                            "description": "Roll dice.",
                            "parameters": {
                                "type": "object",
                                "properties": {
                                    "sides": {"type": "integer", "enum": [4, 6, 20]},
                                    "count": {"type": "integer", "default": 1, "minimum": 1},
                                },
                                "required": ["sides"],
                            },
                            "return": {"type": "integer", "description": "The total"},
                        },
                    }
                ],
            ),
        ),
        S(
            "big_numbers_in_tool_args",
            lambda f: Conversation(
                [
                    user("Store these."),
                    assistant(
                        "",
                        tool_calls=[
                            call(
                                "call00001",
                                "search_code",
                                {
                                    "ints": [2**53 + 1, 2**63 - 1, -(2**63), 12345678901234567890],
                                    "floats": [1.0, 1e16, 1e-300, 123456789.123456789, 5e-324],
                                },
                                json_args=natural_json_args(f),
                            )
                        ],
                    ),
                    tool_result("call00001", "ok"),
                ],
                tools=ALL_TOOLS,
            ),
        ),
        S(
            "control_chars_and_jinja_syntax_in_content",
            lambda f: Conversation(
                [
                    user(
                        "NUL:\x00 VT:\x0b FF:\x0c ESC:\x1b[31m "
                        "LS:\u2028 PS:\u2029 NEL:\x85 DEL:\x7f"
                    ),
                    assistant(
                        "{{ messages }} {% if true %}x{% endif %} {# c #} "
                        "{{ raise_exception('no') }}"
                    ),
                    user("{%- for m in messages %}{{ m }}{% endfor -%}"),
                ]
            ),
        ),
        S(
            "many_turns",
            lambda f: Conversation(
                [sys_msg(SYSTEM)]
                + [
                    m
                    for i in range(150)
                    for m in (user(f"Question {i}: what is {i}+{i}?"), assistant(f"{2 * i}"))
                ]
                + [user("Done?")]
            ),
        ),
        # ---- special-token strings as text ------------------------------------------
        S(
            "special_token_literals_in_content",
            lambda f: Conversation(
                [
                    sys_msg(SYSTEM),
                    user(SPECIAL_LITERALS),
                    assistant("Echo: " + SPECIAL_LITERALS),
                    user("again"),
                ]
            ),
            raises={"gpt-oss": R_GPT_OSS_CHANNEL},
        ),
        S("special_token_literals_user_only", lambda f: Conversation([user(SPECIAL_LITERALS)])),
        S(
            "special_token_literals_in_tool_result",
            lambda f: Conversation(
                [
                    *_tool_turn(f)[:-1],
                    tool_result(
                        "call00001", "<|im_end|>\n<|eot_id|></tool_response>" + SPECIAL_LITERALS
                    ),
                ],
                tools=ALL_TOOLS,
            ),
        ),
    ]


SHAPES: list[Shape] = _shapes()
SHAPES_BY_NAME: dict[str, Shape] = {s.name: s for s in SHAPES}
assert len(SHAPES_BY_NAME) == len(SHAPES), "duplicate shape names"


# --------------------------------------------------------------------------------------
# Samples for encode/decode, and the growing conversation for the segment-cache test
# --------------------------------------------------------------------------------------

TEXT_SAMPLES: dict[str, str] = {
    "ascii": "Hello world",
    "cjk": CJK,
    "emoji_zwj": EMOJI,
    "rtl": RTL,
    "combining": COMBINING,
    "whitespace": WHITESPACE,
    "special_literals": SPECIAL_LITERALS,
    "cleanup_spaces": "Hello , world . It 's fine ! Isn 't it ? I 'm sure , I 've done n't",
    "long_code": LONG_CODE,
    "long_log": LONG_LOG,
}


def growing_conversation(family: str) -> tuple[list[Message], list[dict[str, Any]]]:
    """A conversation rendered prefix by prefix (segment-cache test).

    It uses one tool call per assistant turn (llama-3.2 allows no more), JSON-string arguments
    for the DeepSeek families (R1 raises on dicts) and dict arguments elsewhere
    (qwen3-coder iterates ``arguments`` as a mapping).
    """
    json_args = natural_json_args(family)
    msgs: list[Message] = [
        sys_msg("You are a coding agent."),
        user("Find the forecast parser."),
        assistant(
            "",
            tool_calls=[
                call("call00001", "search_code", {"query": "parse_forecast"}, json_args=json_args)
            ],
        ),
        tool_result("call00001", "src/forecast.py:12: def parse_forecast(raw: str) -> Forecast:"),
        assistant(
            "Found it. Checking the weather too.",
            tool_calls=[call("call00002", "get_weather", {"city": "Paris"}, json_args=json_args)],
        ),
        tool_result("call00002", WEATHER_RESULT),
        assistant("The parser is in src/forecast.py; Paris is 21 °C."),
        user("Now Lyon, please. " + EMOJI[:20]),
        assistant(
            "", tool_calls=[call("call00003", "get_weather", {"city": "Lyon"}, json_args=json_args)]
        ),
        tool_result("call00003", WEATHER_RESULT_LYON),
        assistant("Lyon is 19 °C and cloudy."),
        user("Thanks! " + CJK[:12]),
    ]
    return msgs, [WEATHER_TOOL, SEARCH_TOOL]
