"""Parity of fasttito's chat-template rendering and tokenization with transformers.

The oracle is ``transformers.AutoTokenizer.from_pretrained(folder).apply_chat_template`` on the real
model folders of ``$FASTTITO_MODELS`` (docs/models.md; plus the vendored ``models/qwen2.5``). For
every model x every conversation shape of ``conversations.py`` (parametrized in ``conftest.py``, ids
like ``qwen3-parallel_tool_calls_dict_args``):

* the rendered text (``tokenize=False``) must be identical, then the ids (``tokenize=True``);
* where transformers raises, fasttito must raise ``fasttito.TemplateError``.

Templates that read the clock (gpt-oss always, llama-3.2 without ``date_string``) are rendered
by both sides within the same test; if the texts differ and the date changed in between, the
pair is rendered once more.

Also here: Pydantic messages, ``encode``/``decode``, and a conversation rendered prefix by prefix
on one fasttito tokenizer (its segment cache) against cold renders.
"""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import conversations as C
import pytest
from pydantic import BaseModel, ConfigDict

# --------------------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------------------


@dataclass
class Render:
    """One ``apply_chat_template`` call, replayed identically on both sides."""

    messages: list[Any]
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = False
    continue_final_message: bool | str = False
    kwargs: dict[str, Any] = field(default_factory=dict)
    # What fasttito receives instead of ``messages`` (e.g. Pydantic models); None: the same.
    ft_messages: list[Any] | None = None

    @classmethod
    def of(cls, shape: C.Shape, family: str) -> Render:
        conv = shape.build(family)
        return cls(
            conv.messages,
            conv.tools,
            shape.add_generation_prompt,
            shape.continue_final_message,
            conv.kwargs,
        )


def hf_apply(hf: Any, r: Render, tokenize: bool) -> Any:
    # Fresh copies each time: neither side may rely on the other leaving the input untouched.
    kw: dict[str, Any] = dict(
        tools=copy.deepcopy(r.tools),
        add_generation_prompt=r.add_generation_prompt,
        continue_final_message=r.continue_final_message,
        tokenize=tokenize,
        **copy.deepcopy(r.kwargs),
    )
    if tokenize:
        kw["return_dict"] = False  # transformers 5.x returns a BatchEncoding by default
    out = hf.apply_chat_template(copy.deepcopy(r.messages), **kw)
    if tokenize:
        if isinstance(out, dict) or hasattr(out, "keys"):
            out = out["input_ids"]
        return [int(i) for i in out]
    return out


def ft_apply(ft: Any, r: Render, tokenize: bool) -> Any:
    messages = r.ft_messages if r.ft_messages is not None else r.messages
    snapshot = copy.deepcopy(messages)
    tools_snapshot = copy.deepcopy(r.tools)
    try:
        out = ft.apply_chat_template(
            messages,
            tools=r.tools,
            add_generation_prompt=r.add_generation_prompt,
            continue_final_message=r.continue_final_message,
            tokenize=tokenize,
            **r.kwargs,
        )
    finally:
        assert messages == snapshot, "fasttito.apply_chat_template mutated the caller's messages"
        assert r.tools == tools_snapshot, "fasttito.apply_chat_template mutated the caller's tools"
    if tokenize:
        return [int(i) for i in out]
    assert isinstance(out, str), f"tokenize=False must return str, got {type(out).__name__}"
    return out


def text_diff(expected: str, got: str, ctx: int = 70) -> str:
    i = next(
        (k for k, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    line = expected.count("\n", 0, i) + 1
    lo = max(0, i - ctx)
    return (
        f"texts differ at char {i} (line {line}); "
        f"len transformers={len(expected)} fasttito={len(got)}\n"
        f"  transformers: ...{expected[lo:i]!r} | {expected[i : i + ctx]!r}\n"
        f"  fasttito:     ...{got[lo:i]!r} | {got[i : i + ctx]!r}"
    )


def ids_diff(hf: Any, expected: list[int], got: list[int], ctx: int = 6) -> str:
    i = next(
        (k for k, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    lo = max(0, i - ctx)

    def show(ids: list[int]) -> str:
        window = ids[lo : i + ctx]
        return (
            f"{window} {hf.convert_ids_to_tokens(window)} decoded={hf.decode(ids[lo : i + ctx])!r}"
        )

    return (
        f"ids differ at index {i}; len transformers={len(expected)} fasttito={len(got)}\n"
        f"  transformers [{lo}:{i + ctx}]: {show(expected)}\n"
        f"  fasttito     [{lo}:{i + ctx}]: {show(got)}"
    )


def expect_template_error(
    fasttito: Any, fn: Callable[[], Any], hf_error: BaseException, what: str
) -> None:
    try:
        fn()
    except fasttito.TemplateError:
        return
    except Exception as exc:
        pytest.fail(
            f"{what}: transformers raised {type(hf_error).__name__}: {hf_error}; fasttito raised "
            f"{type(exc).__name__}: {exc} instead of fasttito.TemplateError",
            pytrace=False,
        )
    pytest.fail(
        f"{what}: transformers raised {type(hf_error).__name__}: {hf_error}; "
        "fasttito rendered without error",
        pytrace=False,
    )


def check_parity(hf: Any, ft: Any, fasttito: Any, r: Render, what: str) -> str:
    """Assert that both sides agree on ``r``; returns "raises" or "renders"."""
    for attempt in (0, 1):
        day = _dt.date.today()
        try:
            expected_text = hf_apply(hf, r, tokenize=False)
        except Exception as exc:
            expect_template_error(
                fasttito, lambda: ft_apply(ft, r, tokenize=False), exc, f"{what} (tokenize=False)"
            )
            expect_template_error(
                fasttito, lambda: ft_apply(ft, r, tokenize=True), exc, f"{what} (tokenize=True)"
            )
            return "raises"
        got_text = ft_apply(ft, r, tokenize=False)
        if got_text != expected_text and attempt == 0 and _dt.date.today() != day:
            continue  # the clock crossed midnight between the two renders (strftime_now)
        if got_text != expected_text:
            pytest.fail(
                f"{what}: rendered text differs\n{text_diff(expected_text, got_text)}",
                pytrace=False,
            )

        expected_ids = hf_apply(hf, r, tokenize=True)
        got_ids = ft_apply(ft, r, tokenize=True)
        if got_ids != expected_ids and attempt == 0 and _dt.date.today() != day:
            continue
        if got_ids != expected_ids:
            pytest.fail(
                f"{what}: token ids differ\n{ids_diff(hf, expected_ids, got_ids)}", pytrace=False
            )
        return "renders"
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------
# The matrix: every model x every shape
# --------------------------------------------------------------------------------------


def test_chat_template_parity(parity_case, hf_tokenizer_for, ft_tokenizer_for, fasttito_module):
    model, shape = parity_case
    hf = hf_tokenizer_for(model)  # fails loudly for a missing model folder
    ft = ft_tokenizer_for(model)
    check_parity(
        hf, ft, fasttito_module, Render.of(shape, model.family), f"{model.id}/{shape.name}"
    )


def test_transformers_raises_as_documented(model, hf_tokenizer_for):
    """The corpus records where transformers raises; keep that record true (no fasttito needed).

    If this fails, the oracle changed (another transformers version?) or a shape was edited:
    update ``raises=`` in conversations.py so the report of expected raises stays accurate.
    """
    hf = hf_tokenizer_for(model)
    if model.family not in C.FAMILIES:
        pytest.fail(
            f"unknown model family {model.family!r}: add it to conversations.FAMILIES",
            pytrace=False,
        )
    wrong = []
    for shape in C.SHAPES:
        if not shape.applies_to(model.family):
            continue
        try:
            hf_apply(hf, Render.of(shape, model.family), tokenize=False)
            raised = None
        except Exception as exc:
            raised = f"{type(exc).__name__}: {exc}"
        if (raised is not None) != shape.expected_to_raise(model.family):
            wrong.append(
                f"{shape.name}: documented raises={shape.expected_to_raise(model.family)}, "
                f"transformers: {raised or 'renders'}"
            )
    assert not wrong, "transformers disagrees with conversations.py:\n" + "\n".join(wrong)


def test_corpus_covers_the_brief():
    names = {s.name for s in C.SHAPES}
    assert len(names) >= 35
    for required in (
        "parallel_tool_calls_dict_args",
        "parallel_tool_calls_json_string_args",
        "continue_final_message",
        "kwarg_enable_thinking_false",
        "kwarg_reasoning_effort_high",
        "kwarg_date_string",
        "long_code_message",
        "special_token_literals_in_content",
    ):
        assert required in names
    assert len(C.LONG_CODE) > 20_000 and len(C.LONG_LOG) > 20_000
    # No shape is skipped for any family today (see the conversations.py docstring).
    assert all(s.applies_to(f) for s in C.SHAPES for f in C.FAMILIES)


# --------------------------------------------------------------------------------------
# Pydantic messages
# --------------------------------------------------------------------------------------


class PFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: str | dict[str, Any]


class PToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    type: str = "function"
    function: PFunction


class PMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[PToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


def test_pydantic_messages(pydantic_case, hf_tokenizer_for, ft_tokenizer_for, fasttito_module):
    """Pydantic messages render like their ``model_dump(exclude_none=True)`` dicts in transformers.

    (transformers 5.23 itself cannot take Pydantic messages at the top level: it calls
    ``.items()`` on each message.)
    """
    model, shape = pydantic_case
    hf = hf_tokenizer_for(model)
    ft = ft_tokenizer_for(model)
    base = Render.of(shape, model.family)
    models = [PMessage.model_validate(m) for m in base.messages]
    dumped = [m.model_dump(exclude_none=True) for m in models]

    all_models = Render(
        dumped,
        base.tools,
        base.add_generation_prompt,
        base.continue_final_message,
        base.kwargs,
        ft_messages=models,
    )
    check_parity(
        hf, ft, fasttito_module, all_models, f"{model.id}/{shape.name} (pydantic messages)"
    )

    mixed = [m if i % 2 == 0 else d for i, (m, d) in enumerate(zip(models, dumped, strict=True))]
    mixed_render = Render(
        dumped,
        base.tools,
        base.add_generation_prompt,
        base.continue_final_message,
        base.kwargs,
        ft_messages=mixed,
    )
    check_parity(
        hf,
        ft,
        fasttito_module,
        mixed_render,
        f"{model.id}/{shape.name} (pydantic and dict messages mixed)",
    )


# --------------------------------------------------------------------------------------
# encode / decode
# --------------------------------------------------------------------------------------


def _assert_ids(hf: Any, expected: list[int], got: Any, what: str) -> None:
    got = [int(i) for i in got]
    if got != expected:
        pytest.fail(f"{what}\n{ids_diff(hf, expected, got)}", pytrace=False)


def test_encode_decode(text_case, hf_tokenizer_for, ft_tokenizer_for):
    model, name = text_case
    hf = hf_tokenizer_for(model)
    ft = ft_tokenizer_for(model)
    text = C.TEXT_SAMPLES[name]

    expected = [int(i) for i in hf(text, add_special_tokens=False)["input_ids"]]
    _assert_ids(
        hf,
        expected,
        ft.encode(text),
        f"{model.id}/{name}: encode(text) != transformers(text, add_special_tokens=False)",
    )
    _assert_ids(
        hf,
        expected,
        ft.encode(text, add_special_tokens=False),
        f"{model.id}/{name}: encode(add_special_tokens=False)",
    )
    with_special = [int(i) for i in hf(text)["input_ids"]]
    _assert_ids(
        hf,
        with_special,
        ft.encode(text, add_special_tokens=True),
        f"{model.id}/{name}: encode(add_special_tokens=True)",
    )

    got = ft.decode(expected)
    want = hf.decode(expected)
    assert got == want, f"{model.id}/{name}: decode differs\n{text_diff(want, got)}"
    # Cuts that may split a multi-byte character or a multi-token grapheme (streaming decode).
    for cut in sorted({1, 2, 3, len(expected) // 3, len(expected) // 2, len(expected) - 1} - {0}):
        if cut >= len(expected):
            continue
        got, want = ft.decode(expected[:cut]), hf.decode(expected[:cut])
        assert got == want, (
            f"{model.id}/{name}: decode(ids[:{cut}]) differs\n{text_diff(want, got)}"
        )


def test_decode_rendered_chat(model, hf_tokenizer_for, ft_tokenizer_for):
    """Decoding ids that contain the template's special tokens."""
    hf = hf_tokenizer_for(model)
    ft = ft_tokenizer_for(model)
    msgs, tools = C.growing_conversation(model.family)
    r = Render(msgs, tools, add_generation_prompt=True, kwargs={"date_string": "26 Jul 2024"})
    ids = hf_apply(hf, r, tokenize=True)
    got, want = ft.decode(ids), hf.decode(ids)
    assert got == want, f"{model.id}: decode of chat ids differs\n{text_diff(want, got)}"


# --------------------------------------------------------------------------------------
# A conversation that grows turn by turn (fasttito's segment cache)
# --------------------------------------------------------------------------------------


def _generation_prompt_for(messages: list[dict[str, Any]]) -> bool:
    return messages[-1]["role"] in ("user", "tool", "system")


def test_growing_conversation_matches_cold_render(
    model, hf_tokenizer_for, ft_tokenizer_for, fasttito_module
):
    """Render prefixes of one conversation on the SAME fasttito tokenizer, in several orders and
    with changed tools / kwargs / in-place edits; each render must equal transformers' cold
    render, and the final one must equal a freshly loaded fasttito tokenizer's."""
    hf = hf_tokenizer_for(model)
    ft = ft_tokenizer_for(model)
    msgs, tools = C.growing_conversation(model.family)
    n = len(msgs)
    # ``cache_stats`` is not part of the documented contract; when the core has it, it
    # proves that the renders below really went through the segment cache.
    hits_before = ft.cache_stats()["hits"] if hasattr(ft, "cache_stats") else None
    outcomes: dict[str, str] = {}

    def step(
        label: str,
        prefix: list[Any],
        tools_: Any,
        kwargs: dict[str, Any] | None = None,
        agp: bool | None = None,
    ) -> None:
        r = Render(
            prefix,
            tools_,
            add_generation_prompt=_generation_prompt_for(prefix) if agp is None else agp,
            kwargs=kwargs or {},
        )
        outcomes[label] = check_parity(hf, ft, fasttito_module, r, f"{model.id}: {label}")

    # The same dict objects, in new lists, as a client appends turns.
    for k in range(1, n + 1):
        step(f"grow {k}/{n}", msgs[:k], tools)
    for k in range(n, 0, -1):
        step(f"shrink {k}/{n}", msgs[:k], tools)
    for k in range(2, n + 1, 3):
        step(f"grow {k}/{n} with one tool", msgs[:k], [C.WEATHER_TOOL])
    for k in range(2, n + 1, 4):
        step(f"grow {k}/{n} without tools", msgs[:k], None)
    for kwargs in (
        {"enable_thinking": False},
        {"reasoning_effort": "high"},
        {"date_string": "26 Jul 2024"},
    ):
        step(f"full with {kwargs}", msgs, tools, kwargs)
    step("full, add_generation_prompt=False", msgs, tools, agp=False)
    step("full, again (warm)", msgs, tools)

    if hits_before is not None:
        assert ft.cache_stats()["hits"] > hits_before, (
            f"{model.id}: re-rendering growing prefixes never hit the segment cache"
        )

    # In-place edits of messages the tokenizer has already seen: a cache keyed on object
    # identity would serve stale segments here.
    msgs[3]["content"] = "src/forecast.py:99: def parse_forecast(raw: bytes) -> Forecast:  # edited"
    msgs[1]["content"] += " (edited in place)"
    step("full after in-place edits", msgs, tools)
    for k in range(2, n + 1):
        step(f"grow {k}/{n} after in-place edits", msgs[:k], tools)

    # Cold: a fresh tokenizer must agree with the warm one.
    cold = fasttito_module.Tokenizer.from_dir(str(model.path))
    r = Render(msgs, tools, add_generation_prompt=_generation_prompt_for(msgs))
    if outcomes["full after in-place edits"] == "renders":
        assert ft_apply(cold, r, tokenize=True) == ft_apply(ft, r, tokenize=True), (
            f"{model.id}: warm and cold fasttito ids differ"
        )
    assert "renders" in outcomes.values(), (
        f"{model.id}: every prefix raised; the test exercises nothing"
    )


def test_vendored_qwen25_matches_shared(vendored_model_dir, models_dir, model_folders):
    """The repository's vendored qwen2.5 folder holds the same files as the shared one."""
    shared = models_dir / "qwen2.5"
    assert shared in model_folders, f"no qwen2.5 folder in {models_dir}"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (vendored_model_dir / name).read_bytes() == (shared / name).read_bytes(), (
            f"models/qwen2.5/{name} differs from the shared copy"
        )
