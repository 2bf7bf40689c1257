"""The TITO engine (fasttito.Rollout) against transformers, on real tokenizers.

The engine's completions here are what a real engine samples for a template-following model:
the assistant turn as the model's own template renders it, tokenized, ending in the stop token.
Then, for templates whose rendering of history is stable, the stitched prompt of every turn >= 2
must equal `transformers.apply_chat_template` of the whole conversation, token for token, with
zero fallbacks. Every rule and edge case of docs/wire.md E.2/E.5 has a test below.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fasttito
import pydantic
import pytest
from conftest import VENDORED_MODEL_DIR, shared_models_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web.",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
        },
    },
]


@dataclass
class Family:
    """How a model family's template may be driven so that its history stays stable
    (docs/models.md, "What TITO can promise per family")."""

    name: str
    stop_text: str
    stop_ids: list[int] | None = None
    parallel: bool = True
    user_tails: bool = True
    system: bool = True
    reasoning: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)


FAMILIES = [
    Family("qwen2.5", "<|im_end|>"),
    Family("llama-3.2", "<|eot_id|>", parallel=False, kwargs={"date_string": "26 Jul 2024"}),
    Family("mistral-nemo", "</s>", user_tails=False, system=False),
    # Qwen3 keeps reasoning of the turns after the last user message and renders an empty think
    # block only on a final assistant turn: stable with reasoning on every turn, tool-only tails.
    Family("qwen3", "<|im_end|>", user_tails=False, reasoning=True),
]

_loaded: dict[str, tuple[Any, fasttito.Tokenizer]] = {}


def folder(name: str) -> Path:
    path = shared_models_dir() / name
    if not (path / "tokenizer.json").is_file():
        pytest.fail(f"model folder {path} missing (set FASTTITO_MODELS)", pytrace=False)
    return path


def load(name: str) -> tuple[Any, fasttito.Tokenizer]:
    if name not in _loaded:
        import transformers

        transformers.logging.set_verbosity_error()
        path = folder(name)
        _loaded[name] = (
            transformers.AutoTokenizer.from_pretrained(str(path)),
            fasttito.Tokenizer.from_dir(path),
        )
    return _loaded[name]


def hf_ids(
    hf: Any, messages: list[Any], tools: Any, kwargs: dict[str, Any], gen: bool = True
) -> list[int]:
    return list(
        hf.apply_chat_template(
            messages,
            tools=tools,
            add_generation_prompt=gen,
            tokenize=True,
            return_dict=False,
            **kwargs,
        )
    )


def engine_completion(
    hf: Any, conversation: list[Any], assistant: dict[str, Any], tools: Any, family: Family
) -> list[int]:
    """The ids a template-following model samples: the assistant turn as the template renders
    it after `conversation`, up to and including the stop token."""
    prefix = hf.apply_chat_template(
        conversation, tools=tools, add_generation_prompt=True, tokenize=False, **family.kwargs
    )
    full = hf.apply_chat_template(
        [*conversation, assistant], tools=tools, tokenize=False, **family.kwargs
    )
    assert full.startswith(prefix), "template not history-stable for this shape"
    rest = full[len(prefix) :]
    end = rest.index(family.stop_text) + len(family.stop_text)
    return list(hf.encode(rest[:end], add_special_tokens=False))


def call_id(i: int) -> str:
    return f"call{i:05d}"  # 9 alphanumerics: Mistral-Nemo requires exactly that


@st.composite
def rollouts(draw: st.DrawFn, family: Family) -> list[dict[str, Any]]:
    """A script of turns: what the assistant does, and what the environment answers."""
    text = st.text(
        alphabet=st.sampled_from(list("abc xyz 東京 🙂\n\t.,{}\"'")), min_size=1, max_size=30
    ).map(lambda s: s.strip() or "x")
    turns = []
    for _ in range(draw(st.integers(2, 5))):
        calls = draw(st.integers(1, 2 if family.parallel else 1))
        turns.append(
            {
                "calls": [
                    {"tool": draw(st.sampled_from(["get_weather", "search"])), "arg": draw(text)}
                    for _ in range(calls)
                ],
                "results": [draw(text) for _ in range(calls)],
                "user": draw(text) if family.user_tails and draw(st.booleans()) else None,
                "string_args": draw(st.booleans()),
            }
        )
    return turns


def run_rollout(
    family: Family, script: list[dict[str, Any]], hf: Any, tok: fasttito.Tokenizer
) -> list[fasttito.Plan]:
    rollout = fasttito.Rollout(tok, stop_token_ids=family.stop_ids)
    messages: list[dict[str, Any]] = []
    if family.system:
        messages.append({"role": "system", "content": "You are a weather bot."})
    messages.append({"role": "user", "content": "Help me with the weather."})
    kwargs = family.kwargs or None
    plans = []
    n = 0
    for step in script:
        plan = rollout.prepare(messages, TOOLS, kwargs)
        plans.append(plan)
        expected = hf_ids(hf, messages, TOOLS, family.kwargs)
        if plan.turn > 1:
            assert plan.mode == "tito", (family.name, plan.turn, plan.fallback_reason)
            assert plan.prompt_ids == expected, (
                f"{family.name} turn {plan.turn}: stitched ids differ from transformers"
            )
        else:
            assert plan.fallback_reason == "first_turn"
            assert plan.prompt_ids == expected
        tool_calls = []
        for call in step["calls"]:
            args: Any = {"city" if call["tool"] == "get_weather" else "q": call["arg"]}
            tool_calls.append(
                {
                    "id": call_id(n),
                    "type": "function",
                    "function": {
                        "name": call["tool"],
                        "arguments": json.dumps(args) if step["string_args"] else args,
                    },
                }
            )
            n += 1
        assistant: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": tool_calls}
        if family.reasoning:
            assistant["reasoning_content"] = f"Turn {plan.turn}: call the tool."
        completion = engine_completion(hf, messages, assistant, TOOLS, family)
        rollout.record(plan, completion, assistant, "tool_calls")
        # Each turn shares the ids it reused: the rollout holds the last prompt + completion once.
        assert rollout.held_ids == len(plan.prompt_ids) + len(completion)
        messages.append(assistant)
        for call, result in zip(tool_calls, step["results"], strict=True):
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        if step["user"]:
            messages.append({"role": "user", "content": step["user"]})
    final = rollout.prepare(messages, TOOLS, kwargs)
    assert final.mode == "tito", final.fallback_reason
    assert final.prompt_ids == hf_ids(hf, messages, TOOLS, family.kwargs)
    plans.append(final)
    return plans


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_stitched_ids_equal_transformers_on_stable_templates(family: Family) -> None:
    hf, tok = load(family.name)
    fasttito.reset_metrics()

    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,
    )
    @given(rollouts(family))
    def check(script: list[dict[str, Any]]) -> None:
        run_rollout(family, script, hf, tok)

    check()
    m = fasttito.metrics()
    assert m["tito"] > 0 and m["mito"] == m["fallback.first_turn"], m


def test_qwen3_with_reasoning_reuses_ids_and_bridges_like_transformers() -> None:
    """Qwen3 drops the reasoning of turns before the last user message, so after a tool+user
    tail a full re-render differs; TITO must still start with the previous ids verbatim and add
    exactly the E.2 bridge computed by transformers, and verify mode must point at the rewrite."""
    hf, tok = load("qwen3")
    rollout = fasttito.Rollout(tok, verify=True)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    plan = rollout.prepare(messages, TOOLS)
    assistant = {
        "role": "assistant",
        "content": "",
        "reasoning_content": "I should call the tool.",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    }
    prefix = hf.apply_chat_template(
        messages, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    full = hf.apply_chat_template([*messages, assistant], tools=TOOLS, tokenize=False)
    rest = full[len(prefix) :]
    completion = hf.encode(
        rest[: rest.index("<|im_end|>") + len("<|im_end|>")], add_special_tokens=False
    )
    rollout.record(plan, completion, assistant, "tool_calls")
    prev = plan.prompt_ids + completion
    tail = [
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "user", "content": "Thanks!"},
    ]
    messages += [assistant, *tail]
    plan = rollout.prepare(messages, TOOLS)
    assert plan.mode == "tito"
    dummy = {
        "role": "assistant",
        "reasoning_content": "",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {}}}
        ],
    }
    full_ids = hf_ids(hf, [dummy, *tail], TOOLS, {})
    base_ids = hf_ids(hf, [dummy], TOOLS, {}, gen=False)
    assert full_ids[: len(base_ids)] == base_ids
    gap = next(
        len(base_ids) - i - 1 for i in range(len(base_ids) - 1, -1, -1) if base_ids[i] == prev[-1]
    )
    assert plan.prompt_ids == prev + full_ids[len(base_ids) - gap :]
    assert plan.verify is not None and not plan.verify["identical"], (
        "Qwen3 rewrites history: verify must say where"
    )
    assert (
        "<think>" in plan.verify["stitched_context"] or "<think>" in plan.verify["rendered_context"]
    )


# ---- rules and edge cases (docs/wire.md E.5), on the vendored Qwen2.5 --------------------------

QWEN_STOP = "<|im_end|>"


@pytest.fixture(scope="module")
def qwen() -> tuple[Any, fasttito.Tokenizer]:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(
        str(VENDORED_MODEL_DIR)
    ), fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


def first_turn(
    qwen: tuple[Any, fasttito.Tokenizer], assistant: Any, finish: str = "tool_calls", **kw: Any
) -> tuple[fasttito.Rollout, list[Any], list[int]]:
    hf, tok = qwen
    rollout = fasttito.Rollout(tok, **kw)
    messages: list[Any] = [{"role": "user", "content": "weather?"}]
    plan = rollout.prepare(messages, TOOLS)
    as_dict = assistant.model_dump() if isinstance(assistant, pydantic.BaseModel) else assistant
    as_dict = {k: v for k, v in as_dict.items() if v is not None}
    completion = engine_completion(hf, messages, as_dict, TOOLS, Family("qwen2.5", QWEN_STOP))
    rollout.record(plan, completion, assistant, finish)
    return rollout, [*messages, assistant], plan.prompt_ids + completion


def weather_call(content: Any = "", arguments: Any = None) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": arguments if arguments is not None else {"city": "Paris"},
                },
            }
        ],
    }


TOOL_RESULT = {"role": "tool", "tool_call_id": "call00001", "content": "18C"}


class ToolCallFunction(pydantic.BaseModel):
    name: str
    arguments: str


class ToolCall(pydantic.BaseModel):
    id: str
    type: str = "function"
    function: ToolCallFunction


class AssistantMessage(pydantic.BaseModel):
    role: str = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    thinking_blocks: list[Any] | None = None
    tool_calls: list[ToolCall] | None = None


def test_pydantic_recorded_dict_prompt_matches(qwen: Any) -> None:
    pyd = AssistantMessage(
        content="",
        tool_calls=[
            ToolCall(
                id="call00001",
                function=ToolCallFunction(name="get_weather", arguments='{"city":"Paris"}'),
            )
        ],
    )
    rollout, _, prev = first_turn(qwen, pyd)
    plan = rollout.prepare(
        [
            {"role": "user", "content": "weather?"},
            weather_call(None, {"city": "Paris"}),
            TOOL_RESULT,
        ],
        TOOLS,
    )
    assert plan.mode == "tito", plan.fallback_reason
    assert plan.prompt_ids[: len(prev)] == prev


def test_dict_recorded_pydantic_prompt_matches(qwen: Any) -> None:
    rollout, _, prev = first_turn(qwen, weather_call(""))
    pyd = AssistantMessage(
        tool_calls=[
            ToolCall(
                id="call00001",
                function=ToolCallFunction(name="get_weather", arguments='{"city": "Paris"}'),
            )
        ]
    )
    plan = rollout.prepare([{"role": "user", "content": "weather?"}, pyd, TOOL_RESULT], TOOLS)
    assert plan.mode == "tito", plan.fallback_reason
    assert plan.prompt_ids[: len(prev)] == prev


@pytest.mark.parametrize(
    ("recorded", "resent"),
    [
        (weather_call(""), weather_call(None)),
        (weather_call(None), {k: v for k, v in weather_call().items() if k != "content"}),
        (weather_call("", '{"city":"Paris"}'), weather_call("", '{"city": "Paris"}')),
        (weather_call("", {"city": "Paris"}), weather_call("", '{ "city" : "Paris" }')),
    ],
    ids=["empty-vs-none", "none-vs-absent", "compact-vs-spaced-json", "dict-vs-string-args"],
)
def test_symmetric_normalization(
    qwen: Any, recorded: dict[str, Any], resent: dict[str, Any]
) -> None:
    rollout, _, _ = first_turn(qwen, recorded)
    plan = rollout.prepare([{"role": "user", "content": "weather?"}, resent, TOOL_RESULT], TOOLS)
    assert plan.mode == "tito", plan.fallback_reason


def test_tool_then_user_tail_and_user_not_last(qwen: Any) -> None:
    hf, _ = qwen
    rollout, messages, _ = first_turn(qwen, weather_call())
    ok = [*messages, TOOL_RESULT, {"role": "user", "content": "and Rome?"}]
    plan = rollout.prepare(ok, TOOLS)
    assert plan.mode == "tito" and plan.prompt_ids == hf_ids(hf, ok, TOOLS, {})
    bad = [*messages, {"role": "user", "content": "and Rome?"}, TOOL_RESULT]
    assert rollout.prepare(bad, TOOLS).fallback_reason == "invalid_tail"


def test_truncated_previous_turn_falls_back(qwen: Any) -> None:
    rollout, messages, _ = first_turn(qwen, weather_call(), finish="length")
    assert (
        rollout.prepare([*messages, TOOL_RESULT], TOOLS).fallback_reason
        == "previous_turn_truncated"
    )


def test_missing_stop_token_falls_back(qwen: Any) -> None:
    _, tok = qwen
    rollout = fasttito.Rollout(tok)
    messages = [{"role": "user", "content": "hi"}]
    plan = rollout.prepare(messages)
    rollout.record(
        plan, tok.encode("hello"), {"role": "assistant", "content": "hello"}, "stop"
    )  # SGLang-style: no stop id
    plan = rollout.prepare(
        [*messages, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    )
    assert plan.fallback_reason == "stop_token_missing"


def test_parallel_tool_calls(qwen: Any) -> None:
    hf, tok = qwen
    rollout = fasttito.Rollout(tok)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Paris and Rome?"}]
    plan = rollout.prepare(messages, TOOLS)
    assistant = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            },
            {
                "id": "call00002",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
            },
        ],
    }
    rollout.record(
        plan,
        engine_completion(hf, messages, assistant, TOOLS, Family("qwen2.5", QWEN_STOP)),
        assistant,
        "tool_calls",
    )
    messages += [
        assistant,
        TOOL_RESULT,
        {"role": "tool", "tool_call_id": "call00002", "content": "25C"},
    ]
    plan = rollout.prepare(messages, TOOLS)
    assert plan.mode == "tito" and plan.prompt_ids == hf_ids(hf, messages, TOOLS, {})


def test_largest_of_several_matching_turns_is_chosen(qwen: Any) -> None:
    hf, tok = qwen
    rollout = fasttito.Rollout(tok)
    family = Family("qwen2.5", QWEN_STOP)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather?"}]
    for i in range(3):
        plan = rollout.prepare(messages, TOOLS)
        assistant = {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call_id(i),
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": str(i)}},
                }
            ],
        }
        rollout.record(
            plan, engine_completion(hf, messages, assistant, TOOLS, family), assistant, "tool_calls"
        )
        messages += [assistant, {"role": "tool", "tool_call_id": call_id(i), "content": str(i)}]
    plan = rollout.prepare(messages, TOOLS)
    assert plan.matched_turn == 3  # turns 1 and 2 also prefix the prompt; the longest wins
    assert plan.prompt_ids == hf_ids(hf, messages, TOOLS, {})


def test_no_tokenize_call_when_nothing_matches(qwen: Any) -> None:
    rollout, _, _ = first_turn(qwen, weather_call())
    other = [{"role": "user", "content": "something else"}, weather_call(), TOOL_RESULT]
    result = rollout.begin(other, TOOLS)
    assert isinstance(result, fasttito.Plan) and result.fallback_reason == "no_prefix_match"


def test_remote_tokenization_gives_the_same_ids(qwen: Any) -> None:
    """The bridge tokenized elsewhere (here transformers stands in for vLLM /tokenize)."""
    hf, _ = qwen
    local, messages, _ = first_turn(qwen, weather_call())
    remote, _, _ = first_turn(qwen, weather_call())
    prompt = [*messages, TOOL_RESULT, {"role": "user", "content": "thanks"}]
    pending = remote.begin(prompt, TOOLS)
    assert isinstance(pending, fasttito.PendingBridge)
    full = hf_ids(hf, pending.full_messages, TOOLS, {})
    base = hf_ids(hf, pending.base_messages, TOOLS, {}, gen=False)
    plan = remote.finish(pending, full, base)
    assert plan.mode == "tito" and plan.prompt_ids == local.prepare(prompt, TOOLS).prompt_ids
    with pytest.raises(ValueError, match="already finished"):
        remote.finish(pending, full, base)


def test_failed_remote_tokenization_is_a_counted_fallback(qwen: Any) -> None:
    rollout, messages, _ = first_turn(qwen, weather_call())
    pending = rollout.begin([*messages, TOOL_RESULT], TOOLS)
    before = fasttito.metrics()["fallback.tokenization_failed"]
    plan = rollout.finish(pending, None, None)
    assert plan.fallback_reason == "tokenization_failed"
    # a turn counts once it completed: planned is not yet counted, recorded is
    assert fasttito.metrics()["fallback.tokenization_failed"] == before
    reply = {"role": "assistant", "content": "ok"}
    rollout.record(plan, [11, 12], reply, "stop", prompt_ids=[1, 2, 3])
    assert fasttito.metrics()["fallback.tokenization_failed"] == before + 1


def test_changed_tools_and_kwargs_fall_back(qwen: Any) -> None:
    rollout, messages, _ = first_turn(qwen, weather_call())
    assert rollout.prepare([*messages, TOOL_RESULT], TOOLS[:1]).fallback_reason == "tools_changed"
    assert (
        rollout.prepare([*messages, TOOL_RESULT], TOOLS, {"x": 1}).fallback_reason
        == "chat_template_kwargs_changed"
    )


def test_multimodal_anywhere_forces_messages(qwen: Any) -> None:
    rollout, messages, _ = first_turn(qwen, weather_call())
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    assert rollout.prepare([*messages, TOOL_RESULT, image], TOOLS).fallback_reason == "multimodal"


def test_in_place_mutation_of_history_is_seen(qwen: Any) -> None:
    rollout, messages, _ = first_turn(qwen, weather_call())
    user = messages[0]
    assert rollout.prepare([*messages, TOOL_RESULT], TOOLS).mode == "tito"
    user["content"] = "a different question"  # same dict object, new content
    assert rollout.prepare([*messages, TOOL_RESULT], TOOLS).fallback_reason == "no_prefix_match"


def drive_tool_turns(qwen: Any, turns: int, rebuild: bool) -> list[tuple[str, int, int]]:
    """A ``turns``-turn tool loop on one rollout; with ``rebuild`` every turn's conversation is
    new objects (decoded from JSON, as a caller that receives it over the wire holds it).
    Returns (mode, messages, cached_messages) per turn."""
    hf, tok = qwen
    rollout = fasttito.Rollout(tok)
    messages: list[Any] = [{"role": "user", "content": "weather in 30 cities?"}]
    seen = []
    for t in range(turns):
        sent = json.loads(json.dumps(messages)) if rebuild else messages
        plan = rollout.prepare(sent, TOOLS)
        seen.append((plan.mode, len(sent), rollout.cached_messages))
        call = weather_call(arguments={"city": f"City {t}"})
        call["tool_calls"][0]["id"] = call_id(t)
        completion = engine_completion(hf, sent, call, TOOLS, Family("qwen2.5", QWEN_STOP))
        rollout.record(plan, completion, call, "tool_calls")
        messages += [call, {"role": "tool", "tool_call_id": call_id(t), "content": f"{t} C"}]
    return seen


def test_message_cache_is_bounded_when_every_turn_brings_new_objects(qwen: Any) -> None:
    """The converted-message cache keeps what the last two turns used: with new objects every
    turn it stays about twice the conversation (not turns x messages), and TITO still holds."""
    rebuilt = drive_tool_turns(qwen, 30, rebuild=True)
    assert [mode for mode, _, _ in rebuilt] == ["mito"] + ["tito"] * 29
    for _, n, cached in rebuilt:
        assert cached <= 2 * n + 1, (n, cached)
    # The same objects every turn: each message is converted once and kept once.
    kept = drive_tool_turns(qwen, 30, rebuild=False)
    assert [mode for mode, _, _ in kept] == ["mito"] + ["tito"] * 29
    for _, n, cached in kept:
        assert cached == n, (n, cached)


def test_glm_style_stop_token_is_not_duplicated(tmp_path: Path, qwen: Any) -> None:
    """GLM's stop token <|observation|> also opens the tool result (docs/wire.md E.2). A synthetic
    template on the Qwen vocabulary plays it with <|endoftext|>: the sampled stop token must not
    appear twice."""
    shutil.copy(VENDORED_MODEL_DIR / "tokenizer.json", tmp_path / "tokenizer.json")
    config = json.loads((VENDORED_MODEL_DIR / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}{% if m.role == 'user' %}<|im_start|>{{ m.content }}"
        "{% elif m.role == 'assistant' %}<|im_end|>{{ m.content or '' }}"
        "{% elif m.role == 'tool' %}<|endoftext|>{{ m.content }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_end|>{% endif %}"
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = fasttito.Tokenizer.from_dir(tmp_path)
    observation = tok.token_to_id("<|endoftext|>")
    rollout = fasttito.Rollout(tok, stop_token_ids=[observation])
    messages: list[dict[str, Any]] = [{"role": "user", "content": "q"}]
    plan = rollout.prepare(messages)
    completion = [*tok.encode("call it"), observation]
    assistant = {
        "role": "assistant",
        "content": "call it",
        "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": {}}}
        ],
    }
    rollout.record(plan, completion, assistant, "stop")
    messages += [assistant, {"role": "tool", "tool_call_id": "t1", "content": "result"}]
    plan = rollout.prepare(messages)
    assert plan.mode == "tito" and plan.deduped
    assert plan.prompt_ids == tok.apply_chat_template(messages, add_generation_prompt=True)
    assert plan.prompt_ids.count(observation) == 1


def test_fallback_warning_is_logged_once_per_rollout(
    qwen: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rollout, messages, _ = first_turn(qwen, weather_call())
    with caplog.at_level(logging.WARNING, logger="fasttito"):
        for _ in range(3):
            rollout.prepare([*messages, {"role": "assistant", "content": "x"}], TOOLS)
    warnings = [r for r in caplog.records if "fell back" in r.getMessage()]
    assert len(warnings) == 1 and "invalid_tail" in warnings[0].getMessage()


def test_verifiers_trajectory_shape(qwen: Any) -> None:
    """A verifiers-style state["trajectory"] with Pydantic prompts is used as it is."""
    hf, tok = qwen
    family = Family("qwen2.5", QWEN_STOP)
    prompt = [{"role": "user", "content": "weather?"}]
    pyd = AssistantMessage(
        content="",
        thinking_blocks=None,
        tool_calls=[
            ToolCall(
                id="call00001",
                function=ToolCallFunction(name="get_weather", arguments='{"city": "Paris"}'),
            )
        ],
    )
    as_dict = {k: v for k, v in pyd.model_dump().items() if v is not None}
    prompt_ids = hf_ids(hf, prompt, TOOLS, {})
    completion_ids = engine_completion(hf, prompt, as_dict, TOOLS, family)
    trajectory = [
        {
            "prompt": prompt,
            "completion": [pyd],
            "tokens": {
                "prompt_ids": prompt_ids,
                "completion_ids": completion_ids,
                "is_truncated": False,
            },
            "response": None,
        }
    ]
    rollouts = fasttito.TrajectoryRollouts(tok)
    new_prompt = [*prompt, as_dict, TOOL_RESULT]
    plan = rollouts.prompt_ids(trajectory, new_prompt, TOOLS)
    assert plan.mode == "tito" and plan.prompt_ids == hf_ids(hf, new_prompt, TOOLS, {})
    trajectory.append({"prompt": new_prompt, "completion": [], "tokens": None, "response": None})
    again = rollouts.prompt_ids(trajectory, new_prompt, TOOLS)  # the token-less step is skipped
    assert again.prompt_ids == plan.prompt_ids


def test_trajectory_steps_share_the_ids_they_repeat(qwen: Any) -> None:
    """Ingested verifiers steps keep only their new ids: each step's prompt ids are checked to
    start with the matched step's prompt + completion and share them, so a long trajectory
    costs its tokens once, not once per step."""
    hf, tok = qwen
    family = Family("qwen2.5", QWEN_STOP)
    rollouts = fasttito.TrajectoryRollouts(tok)
    trajectory: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in six cities?"}]
    for i in range(6):
        expected = hf_ids(hf, messages, TOOLS, {})
        plan = rollouts.prompt_ids(trajectory, messages, TOOLS)
        if i:
            assert plan.mode == "tito" and plan.prompt_ids == expected, plan.fallback_reason
        assistant = weather_call("", {"city": f"c{i}"})
        assistant["tool_calls"][0]["id"] = call_id(i)
        completion = engine_completion(hf, messages, assistant, TOOLS, family)
        tokens = {"prompt_ids": expected, "completion_ids": completion, "is_truncated": False}
        trajectory.append(
            {
                "prompt": list(messages),
                "completion": [assistant],
                "tokens": tokens,
                "response": None,
            }
        )
        messages = [
            *messages,
            assistant,
            {"role": "tool", "tool_call_id": call_id(i), "content": f"{i}C"},
        ]
    rollout = rollouts.rollout_for(trajectory, TOOLS)
    assert len(rollout) == 6
    assert rollout.held_ids == len(expected) + len(completion)
    # A step's ids are kept as they are: a different bridge still shares the repeated prefix;
    # ids that differ inside the repeated part (another tokenization) are kept whole.
    prev = trajectory[-2]["tokens"]
    shared = len(prev["prompt_ids"]) + len(prev["completion_ids"])
    held_before = fasttito.TrajectoryRollouts(tok).rollout_for(trajectory[:-1], TOOLS).held_ids
    for ids, held in [
        ([*expected[:-3], 11, 12, 13], held_before + len(expected) - shared + len(completion)),
        ([11, *expected[1:]], held_before + len(expected) + len(completion)),
    ]:
        step = dict(trajectory[-1], tokens={**tokens, "prompt_ids": ids})
        assert (
            fasttito.TrajectoryRollouts(tok).rollout_for([*trajectory[:-1], step], TOOLS).held_ids
            == held
        )


# ------------------------------------------------------------- turns completed without a record


def generate_body(completion: list[int], prompt: list[int] | None = None) -> bytes:
    """A vLLM ``/inference/v1/generate`` answer (docs/wire.md B.2) with ``completion``."""
    choice: dict[str, Any] = {
        "index": 0,
        "token_ids": completion,
        "finish_reason": "stop",
        "logprobs": {"content": [{"token": f"token_id:{i}", "logprob": -0.5} for i in completion]},
    }
    body: dict[str, Any] = {"request_id": "gen-1", "choices": [choice]}
    if prompt is not None:
        body["prompt_token_ids"] = prompt
    return json.dumps(body).encode()


GENERATE_REQUEST: dict[str, Any] = {
    "kind": "vllm-generate",
    "model": "m",
    "transport": "vllm-generate",
    "sampling": {"max_tokens": 8},
}


def test_complete_turn_decodes_without_recording_or_counting(qwen: Any) -> None:
    """``_core.complete_turn`` is ``Rollout.complete`` minus the record and the count: the turn
    is parsed, checked and decoded with the given tokenizer, the rollout stays as it was, the
    metrics too, and ``plan.count()`` counts it once."""
    hf, tok = qwen
    rollout = fasttito.Rollout(tok)
    messages = [{"role": "user", "content": "weather?"}]
    plan = rollout._plan_turn(messages, None, None, **GENERATE_REQUEST)
    assert plan.sends_ids and plan.prompt_ids is not None
    completion = [*hf.encode("Sunny.", add_special_tokens=False), tok.token_to_id(QWEN_STOP)]
    fasttito.reset_metrics()
    data = fasttito._core.complete_turn(
        plan,
        generate_body(completion),
        wire="vllm-generate",
        transport="vllm-generate",
        decode_locally=True,
        tokenizer=tok,
        vocab_size=tok.vocab_size,
    )
    assert data.content == "Sunny." and data.completion_ids == completion
    assert data.prompt_ids == plan.prompt_ids  # the server reported none: the ids sent
    assert data.mode == "mito" and data.fallback_reason == "first_turn"
    assert len(rollout) == 0 and fasttito.metrics()["turns"] == 0
    assert plan.count() and not plan.count()
    assert fasttito.metrics()["mito"] == 1
    # without a tokenizer nothing is decoded (content is the server's: none on this route)
    bare = fasttito._core.complete_turn(
        plan, generate_body(completion), wire="vllm-generate", transport="t", decode_locally=True
    )
    assert bare.content is None and bare.completion_ids == completion
    # checked as Rollout.complete checks: an id outside the vocabulary is a parse error
    with pytest.raises(fasttito.ResponseParseError, match="outside the vocabulary"):
        fasttito._core.complete_turn(
            plan,
            generate_body([tok.vocab_size]),
            wire="vllm-generate",
            transport="t",
            decode_locally=False,
            vocab_size=tok.vocab_size,
        )


def test_complete_turn_prompt_ids_are_those_sent(qwen: Any) -> None:
    """A plan that rendered ids but sends the messages (``mito_messages``) reports the server's
    prompt ids, or none: never the local render that was not sent."""
    _, tok = qwen
    rollout = fasttito.Rollout(tok)
    messages = [{"role": "user", "content": "weather?"}]
    plan = rollout._plan_turn(
        messages,
        None,
        None,
        kind="dynamo",
        model="m",
        transport="dynamo-nvext",
        messages_target="dynamo",
        mito_messages=True,
    )
    assert plan.prompt_ids is not None and not plan.sends_ids
    done = fasttito._core.complete_turn(
        plan, generate_body([1, 2]), wire="vllm-generate", transport="t", decode_locally=False
    )
    assert done.prompt_ids is None
    done = fasttito._core.complete_turn(
        plan,
        generate_body([1, 2], [5, 6]),
        wire="vllm-generate",
        transport="t",
        decode_locally=False,
    )
    assert done.prompt_ids == [5, 6] and done.engine_prompt_ids


def test_plan_ids_carries_a_callers_ids_and_is_never_counted_or_recorded(qwen: Any) -> None:
    _, tok = qwen
    messages = [{"role": "user", "content": "weather?"}]
    plan = fasttito._core.plan_ids(
        [3, 4, 5], messages, turn=2, vocab_size=tok.vocab_size, **GENERATE_REQUEST
    )
    assert plan.mode == "tito" and plan.turn == 2 and plan.fallback_reason is None
    assert plan.sends_ids and plan.prompt_ids == [3, 4, 5] and plan.tokens_reused == 0
    assert plan.body is not None and json.loads(plan.body)["token_ids"] == [3, 4, 5]
    assert not plan.count()  # fasttito did not plan it: it never counts
    mito = fasttito._core.plan_ids([3], messages, turn=1, tito=False, **GENERATE_REQUEST)
    assert mito.mode == "mito" and mito.bridge_tokens == 0
    # the ids are checked against the vocabulary before the body is written
    with pytest.raises(fasttito.InvalidTokenIdError):
        fasttito._core.plan_ids(
            [tok.vocab_size], messages, turn=1, vocab_size=tok.vocab_size, **GENERATE_REQUEST
        )
    # no rollout records a turn it did not plan
    rollout = fasttito.Rollout(tok)
    with pytest.raises(fasttito.FasttitoError, match="caller's prompt ids"):
        rollout.record(plan, [7, 8], {"role": "assistant", "content": "x"})
    with pytest.raises(fasttito.FasttitoError, match="complete_turn"):
        rollout._complete_turn(
            plan,
            generate_body([7, 8]),
            wire="vllm-generate",
            transport="t",
            decode_locally=False,
        )
    assert len(rollout) == 0
