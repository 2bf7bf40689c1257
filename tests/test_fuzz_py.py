"""Property-based fuzzing (hypothesis) of the Python entry points that take outside data:
``parse_response``, ``request_body``, ``Tokenizer.from_dir`` on mangled folders,
``apply_chat_template`` with hostile templates, ``Rollout.prepare`` with odd messages.

The rule for each: any input gives a result or a fasttito error (never another exception, a
crash or a hang), and a result keeps the invariants a caller relies on. The Rust side of the
same entry points is fuzzed with libFuzzer (fuzz/, scripts/fuzz).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fasttito
import pytest
from conftest import VENDORED_MODEL_DIR
from fasttito import _core
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parent.parent / "rust" / "tests" / "fixtures"
WIRES = ("vllm-chat", "vllm-generate", "dynamo", "chat")
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


def fixture_bodies() -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        name = path.name
        wire = (
            "dynamo"
            if name.startswith(("dynamo", "wire_c2"))
            else "chat"
            if "openai" in name
            else "vllm-generate"
            if "generate" in name or "b2" in name
            else "vllm-chat"
        )
        out.append((wire, path.read_bytes()))
    return out


BODIES = fixture_bodies()


def check_parsed(p: Any, wire: str) -> None:
    ids = p.completion_ids
    lps = p.completion_logprobs
    if lps is not None:
        # a plain OpenAI answer (the chat wire) may send logprobs without ids
        assert len(lps) == len(ids) or (wire == "chat" and len(ids) == 0)
        assert sum(math.isnan(x) for x in lps) == p.null_logprobs
    assert all(0 <= t < 2**32 for t in ids.tolist())


# --------------------------------------------------------------------------- parse_response


@FAST
@given(data=st.binary(max_size=2048), wire=st.sampled_from(WIRES))
def test_parse_response_on_random_bytes(data: bytes, wire: str) -> None:
    try:
        check_parsed(fasttito.parse_response(data, wire), wire)
    except fasttito.ResponseParseError:
        pass


@FAST
@given(
    case=st.sampled_from(BODIES),
    cut=st.integers(min_value=0, max_value=10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
)
def test_parse_response_on_mutated_real_bodies(
    case: tuple[str, bytes], cut: int, flips: list[tuple[int, int]]
) -> None:
    wire, body = case
    buf = bytearray(body[: max(1, cut % (len(body) + 1))] if cut % 3 == 0 else body)
    for pos, byte in flips:
        if buf:
            buf[pos % len(buf)] = byte
    try:
        check_parsed(fasttito.parse_response(bytes(buf), wire), wire)
    except fasttito.ResponseParseError:
        pass


@FAST
@given(
    case=st.sampled_from(BODIES), path=st.lists(st.text(max_size=8), max_size=3), value=json_value
)
def test_parse_response_with_a_replaced_field(
    case: tuple[str, bytes], path: list[str], value: Any
) -> None:
    """Real bodies with one JSON value swapped for arbitrary JSON, at a real or a new key."""
    wire, body = case
    doc = json.loads(body)
    node: Any = doc
    keys = ["choices", 0, *path] if path else ["choices", 0, "logprobs"]
    for k in keys[:-1]:
        if isinstance(node, list) and isinstance(k, int) and k < len(node):
            node = node[k]
        elif isinstance(node, dict) and isinstance(k, str):
            node = node.setdefault(k, {})
        else:
            break
    last = keys[-1]
    if isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    try:
        check_parsed(fasttito.parse_response(json.dumps(doc).encode(), wire), wire)
    except fasttito.ResponseParseError:
        pass


# --------------------------------------------------------------------------- request_body

sampling_st = st.dictionaries(
    st.sampled_from(
        [
            "temperature",
            "max_tokens",
            "max_completion_tokens",
            "logprobs",
            "top_logprobs",
            "cache_salt",
            "priority",
            "nvext",
            "extra_body",
            "stop",
            "stop_token_ids",
            "return_token_ids",
            "chat_template_kwargs",
            "skip_special_tokens",
            "seed",
            "x",
        ]
    ),
    json_value,
    max_size=6,
)


@FAST
@given(
    kind=st.sampled_from(["vllm-generate", "chat-tokens", "dynamo", "chat"]),
    target=st.sampled_from(["vllm", "dynamo", "openai"]),
    sampling=sampling_st,
    ids=st.lists(st.integers(0, 2**32 - 1), max_size=20),
    salt=st.none() | st.text(max_size=8),
    priority=st.none() | st.integers(-(2**40), 2**40),
)
def test_request_body_any_sampling(
    kind: str,
    target: str,
    sampling: dict[str, Any],
    ids: list[int],
    salt: str | None,
    priority: int | None,
) -> None:
    try:
        body = _core.request_body(
            kind,
            "m",
            token_ids=ids,
            messages=[{"role": "user", "content": "hi"}],
            sampling=sampling,
            cache_salt=salt,
            priority=priority,
            stop_token_ids=[7],
            target=target,
        )
    except fasttito.FasttitoError:
        return
    doc = json.loads(body, object_pairs_hook=no_duplicates)
    assert isinstance(doc, dict)
    if kind == "vllm-generate":
        assert doc["token_ids"] == ids
    if kind == "dynamo":
        assert doc["nvext"]["token_data"] == ids
    if kind == "dynamo" or (kind == "chat" and target == "dynamo"):
        assert "priority" not in doc and "cache_salt" not in doc


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys {keys}"
    return dict(pairs)


def test_request_body_refuses_bad_ids() -> None:
    for bad in ([-1], [2**32], [1.5], ["1"]):
        with pytest.raises((fasttito.FasttitoError, TypeError, OverflowError, ValueError)):
            _core.request_body("vllm-generate", "m", token_ids=bad)


# --------------------------------------------------------------------------- Tokenizer.from_dir

FOLDER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=json_value,
    special=json_value,
    generation=json_value,
    jinja=st.none() | st.text(max_size=200),
    drop_tokenizer=st.booleans(),
    tokenizer_junk=st.none() | st.binary(max_size=200),
)
def test_from_dir_on_mangled_folders(
    config: Any,
    special: Any,
    generation: Any,
    jinja: str | None,
    drop_tokenizer: bool,
    tokenizer_junk: bytes | None,
) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        if tokenizer_junk is not None:
            (folder / "tokenizer.json").write_bytes(tokenizer_junk)
        elif not drop_tokenizer:
            shutil.copy(Path(VENDORED_MODEL_DIR) / "tokenizer.json", folder / "tokenizer.json")
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        (folder / "special_tokens_map.json").write_text(json.dumps(special))
        (folder / "generation_config.json").write_text(json.dumps(generation))
        if jinja is not None:
            (folder / "chat_template.jinja").write_text(jinja)
        try:
            tok = fasttito.Tokenizer.from_dir(folder, template_fuel=100_000)
        except fasttito.FasttitoError:
            return
        assert all(0 <= t < tok.vocab_size for t in tok.stop_token_ids) or tok.stop_token_ids
        try:
            tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
        except fasttito.FasttitoError:
            pass


def test_tokenizer_json_that_panics_the_tokenizers_crate(tmp_path: Path) -> None:
    """Found by fuzz/ tokenizer_load: the tokenizers crate panics on a syntax error inside
    ``decoder``; it must be a TokenizerLoadError (a PanicException is not even an Exception)."""
    (tmp_path / "tokenizer.json").write_text(
        '{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null, '
        '"post_processor": null, "decoder": {"type": }, "model": {"type": "WordLevel", '
        '"vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}}'
    )
    with pytest.raises(fasttito.TokenizerLoadError, match=r"not a valid tokenizer.json"):
        fasttito.Tokenizer.from_dir(tmp_path)


# --------------------------------------------------------------------------- hostile templates

HOSTILE = [
    "{% for i in range(10**9) %}{{ i }}{% endfor %}",
    "{% set x = 'a' * 10**9 %}{{ x }}",
    "{{ 'a'.center(10**12) }}",
    "{{ 'ab'.ljust(2**62) }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ messages * 10**9 }}",
    "{% for a in messages %}{% for b in messages %}{% for c in messages %}{% for d in messages %}"
    "{% for e in messages %}{{ e.content }}"
    "{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
    "{{ raise_exception('nope') }}",
    "{{ messages[0].content.split('')|list }}",
    "{{ (messages|tojson) * 100000000 }}",
    "{{ 'x'.zfill(10**15) }}",
    "{{ range(10**18)|list }}",
    "{{ '%s' % (10**100) }}",
    "{{ 10**10**10 }}",
    "{% include 'chat_template' %}",
    "{{ ''.join(['a'] * 10**9) }}",
    "{{ messages|tojson(indent=10**9) }}",
]


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copy(Path(VENDORED_MODEL_DIR) / "tokenizer.json", folder / "tokenizer.json")
    return folder


# Legitimate in Python too, but large: they must finish, bounded, without a crash.
LARGE_BUT_FINE = ["{{ strftime_now('%Y' * 100000) }}"]


@pytest.mark.parametrize("template", LARGE_BUT_FINE)
def test_large_templates_finish(hostile_dir: Path, template: str) -> None:
    (hostile_dir / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    text = fasttito.Tokenizer.from_dir(hostile_dir).apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False
    )
    assert isinstance(text, str) and len(text) <= 1 << 20


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_templates_are_bounded(hostile_dir: Path, template: str) -> None:
    config = {"chat_template": template, "eos_token": "<|im_end|>"}
    (hostile_dir / "tokenizer_config.json").write_text(json.dumps(config))
    try:
        tok = fasttito.Tokenizer.from_dir(hostile_dir)
    except fasttito.TemplateError:
        return
    messages = [{"role": "user", "content": "hi " * 50}] * 20
    with pytest.raises(fasttito.TemplateError):
        tok.apply_chat_template(messages, tokenize=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=st.text(
        alphabet=st.sampled_from(list("{}%#()[]|.'\"*+-~ aeflnorstx0123456789,=_")), max_size=80
    )
)
def test_random_template_text(hostile_dir: Path, template: str) -> None:
    from fasttito import _core as core  # noqa: F401  (the same module the tokenizer uses)

    config = {"chat_template": template}
    (hostile_dir / "tokenizer_config.json").write_text(json.dumps(config))
    try:
        tok = fasttito.Tokenizer.from_dir(hostile_dir, template_fuel=200_000)
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    except fasttito.FasttitoError:
        pass


# --------------------------------------------------------------------------- Rollout.prepare

role_st = st.sampled_from(["user", "assistant", "tool", "system", "developer", "", "x"])
message_st = st.one_of(
    st.fixed_dictionaries(
        {"role": role_st},
        optional={
            "content": st.none()
            | st.text(max_size=20)
            | st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=5)}
                ),
                max_size=2,
            ),
            "tool_calls": st.lists(
                st.fixed_dictionaries(
                    {"id": st.text(max_size=9)},
                    optional={
                        "function": st.fixed_dictionaries(
                            {
                                "name": st.text(max_size=8),
                                "arguments": st.text(max_size=20)
                                | st.dictionaries(st.text(max_size=4), json_leaf, max_size=2),
                            }
                        ),
                        "type": st.just("function"),
                    },
                ),
                max_size=2,
            ),
            "tool_call_id": st.text(max_size=9),
            "reasoning_content": st.none() | st.text(max_size=10),
            "name": st.text(max_size=5),
        },
    ),
    json_value,
)


@FAST
@given(first=st.lists(message_st, max_size=4), tail=st.lists(message_st, max_size=4))
def test_rollout_prepare_with_odd_messages(
    tok: fasttito.Tokenizer, first: list[Any], tail: list[Any]
) -> None:
    r = fasttito.Rollout(tok)
    try:
        plan = r.prepare(first)
    except fasttito.FasttitoError:
        return
    assume(plan.prompt_ids is not None)
    completion = [*tok.encode("ok"), tok.stop_token_ids[0]]
    assistant = {"role": "assistant", "content": "ok"}
    r.record(plan, completion, assistant, "stop")
    try:
        plan2 = r.prepare([*first, assistant, *tail])
    except fasttito.FasttitoError:
        return
    assert plan2.mode in ("tito", "mito")
    if plan2.mode == "tito":
        head = [*plan.prompt_ids.tolist(), *completion]
        assert plan2.prompt_ids is not None
        assert plan2.prompt_ids.tolist()[: len(head)] == head
    else:
        assert plan2.fallback_reason is not None
