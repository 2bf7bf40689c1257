"""fasttito.Tokenizer: loading, typed errors, input conversion, limits and thread safety.

Uses the Qwen2.5 folder vendored in the repository; parity with transformers over the whole
model matrix is in test_parity.py.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import fasttito
import pydantic
import pytest
from fasttito import (
    FasttitoError,
    MessageError,
    TemplateError,
    TemplateLimitError,
    TokenizationError,
    TokenizerLoadError,
)

REPO = Path(__file__).resolve().parents[1]
QWEN = REPO / "models" / "qwen2.5"

USER = {"role": "user", "content": "hi"}


@pytest.fixture(scope="module")
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(QWEN)


def folder_with_template(tmp_path: Path, template: str) -> Path:
    """A copy of the vendored folder whose chat template is `template`."""
    shutil.copy(QWEN / "tokenizer.json", tmp_path / "tokenizer.json")
    config = json.loads((QWEN / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


def test_basics(tok: fasttito.Tokenizer) -> None:
    assert tok.encode("Hello world") == [9707, 1879]
    assert tok.decode([9707, 1879]) == "Hello world"
    assert tok.stop_token_ids == [151645]
    assert tok.eos_token == "<|im_end|>"
    assert tok.bos_token is None
    assert tok.special_tokens == {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    assert tok.vocab_size == 151665
    assert tok.token_to_id("<|im_end|>") == 151645
    assert tok.id_to_token(151645) == "<|im_end|>"
    assert tok.token_to_id("no such token") is None
    assert tok.chat_template_names == ["default"]
    assert tok.model_max_length == 131072
    assert "qwen2.5" in repr(tok)


def test_exception_tree() -> None:
    assert issubclass(TokenizerLoadError, FasttitoError) and issubclass(TokenizerLoadError, OSError)
    assert issubclass(TemplateError, ValueError)
    assert issubclass(TemplateLimitError, TemplateError)
    assert issubclass(MessageError, TemplateError) and issubclass(MessageError, TypeError)
    assert issubclass(TokenizationError, ValueError)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(TokenizerLoadError, match="not a directory"):
        fasttito.Tokenizer.from_dir(tmp_path / "missing")
    with pytest.raises(TokenizerLoadError, match=r"no tokenizer.json"):
        fasttito.Tokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{")
    with pytest.raises(TokenizerLoadError, match=r"not a valid tokenizer.json"):
        fasttito.Tokenizer.from_dir(tmp_path)


def test_template_syntax_error_is_typed(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not compile"):
        fasttito.Tokenizer.from_dir(folder_with_template(tmp_path, "{% if %}"))


def test_raise_exception_carries_the_template_message(tmp_path: Path) -> None:
    tok = fasttito.Tokenizer.from_dir(
        folder_with_template(
            tmp_path, "{{ raise_exception('Roles must alternate, got ' + messages[0].role) }}"
        )
    )
    with pytest.raises(TemplateError) as info:
        tok.apply_chat_template([USER])
    assert str(info.value) == "Roles must alternate, got user"
    assert not isinstance(info.value, TemplateLimitError)


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s }}",
        "{{ 'x' * 100000000 }}{{ 'x' * 100000000 }}{{ 'x' * 100000000 }}",
    ],
    ids=["nested-loops", "unbounded-recursion", "doubling-string", "huge-output"],
)
def test_runaway_templates_stop_within_bounded_time(tmp_path: Path, template: str) -> None:
    tok = fasttito.Tokenizer.from_dir(
        folder_with_template(tmp_path, template), template_fuel=1_000_000
    )
    start = time.monotonic()
    with pytest.raises(TemplateLimitError):
        tok.apply_chat_template([USER], tokenize=False)
    assert time.monotonic() - start < 60  # a hang would never get here; the budget is seconds


def test_template_fuel_is_configurable(tmp_path: Path) -> None:
    folder = folder_with_template(tmp_path, "{% for i in range(5000) %}x{% endfor %}")
    assert (
        len(fasttito.Tokenizer.from_dir(folder).apply_chat_template([USER], tokenize=False)) == 5000
    )
    with pytest.raises(TemplateLimitError, match="template_fuel"):
        fasttito.Tokenizer.from_dir(folder, template_fuel=1000).apply_chat_template(
            [USER], tokenize=False
        )


def test_no_file_access(tmp_path: Path) -> None:
    tok = fasttito.Tokenizer.from_dir(
        folder_with_template(tmp_path, "{% include 'tokenizer.json' %}")
    )
    with pytest.raises(TemplateError):
        tok.apply_chat_template([USER], tokenize=False)


# Deliberately the str mixin and not enum.StrEnum (ruff UP042): str(Role.USER) is "Role.USER"
# here, so the test below also pins that fasttito reads the str value, not str() of the object.
class Role(str, enum.Enum):  # noqa: UP042
    USER = "user"


class PydMessage(pydantic.BaseModel):
    role: str
    content: str | None = None
    thinking_blocks: list[Any] | None = None


@dataclasses.dataclass
class DcMessage:
    role: str
    content: str


def test_rich_objects_become_plain_data(tok: fasttito.Tokenizer) -> None:
    plain = tok.apply_chat_template([USER], tokenize=False)
    assert tok.apply_chat_template([PydMessage(role="user", content="hi")], tokenize=False) == plain
    assert tok.apply_chat_template([DcMessage(role="user", content="hi")], tokenize=False) == plain
    assert tok.apply_chat_template([{"role": Role.USER, "content": "hi"}], tokenize=False) == plain
    assert tok.apply_chat_template(({"role": "user", "content": "hi"},), tokenize=False) == plain


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        (["hi"], "message 0 is a string"),
        ([{"role": "user", "content": "x", "meta": {1: "a"}}], "keys must be strings"),
        ([{"role": "user", "content": float("nan")}], "JSON cannot hold"),
        ([{"role": "user", "content": 2**80}], "64-bit"),
        (42, "must be a list"),
        ([{"role": "user", "content": "bad \ud800 text"}], "lone surrogate"),
    ],
)
def test_bad_messages_are_message_errors(
    tok: fasttito.Tokenizer, messages: Any, match: str
) -> None:
    with pytest.raises(MessageError, match=match):
        tok.apply_chat_template(messages)


def test_argument_errors(tok: fasttito.Tokenizer) -> None:
    with pytest.raises(TemplateError, match="empty conversation"):
        tok.apply_chat_template([])
    with pytest.raises(TemplateError, match="not compatible"):
        tok.apply_chat_template([USER], add_generation_prompt=True, continue_final_message=True)
    with pytest.raises(MessageError, match="tools must be JSON schema dicts"):
        tok.apply_chat_template([USER], tools=["not a schema"])
    with pytest.raises(TypeError, match="multiple values"):
        tok.apply_chat_template([USER], messages=[])  # type: ignore[misc]
    with pytest.raises(TemplateError, match="no chat template named"):
        tok.apply_chat_template([USER], chat_template="tool_use")


def test_decode_rejects_ids_outside_the_vocabulary(tok: fasttito.Tokenizer) -> None:
    with pytest.raises(TokenizationError, match="vocabulary has 151665 ids"):
        tok.decode([1, 10**9])


def test_encode_rejects_lone_surrogates(tok: fasttito.Tokenizer) -> None:
    with pytest.raises(TokenizationError, match="lone surrogate"):
        tok.encode("a\ud800b")


def test_reuse_counts_hits_and_stays_exact(tok: fasttito.Tokenizer) -> None:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "sys"}]
    before = tok.cache_stats()
    for i in range(10):
        messages += [
            {"role": "user", "content": f"q{i} 👋🏽 שלום e\u0301"},
            {"role": "assistant", "content": f"a{i}"},
        ]
        ids = tok.apply_chat_template(messages)
        text = tok.apply_chat_template(messages, tokenize=False)
        assert ids == tok.encode(text)
    after = tok.cache_stats()
    assert after["hits"] > before.get("hits", 0)
    assert after["bytes"] > 0


def test_no_reuse_when_cache_is_off() -> None:
    tok = fasttito.Tokenizer.from_dir(QWEN, cache_bytes=0)
    assert tok.apply_chat_template([USER]) == fasttito.Tokenizer.from_dir(QWEN).apply_chat_template(
        [USER]
    )
    assert tok.cache_stats() == {}


def test_threads_share_one_tokenizer(tok: fasttito.Tokenizer) -> None:
    """Many threads render different growing conversations on one Tokenizer (GIL released in
    Rust); every result equals the single-threaded one."""

    def conversation(worker: int, turns: int) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = [{"role": "system", "content": f"worker {worker}"}]
        for t in range(turns):
            msgs += [
                {"role": "user", "content": f"w{worker} t{t} " + "text " * (t * 7 % 50)},
                {"role": "assistant", "content": f"answer {t} " * (worker % 5 + 1)},
            ]
        return msgs

    jobs = [(w, t) for w in range(8) for t in range(1, 12)]
    expected = {job: tok.apply_chat_template(conversation(*job)) for job in jobs}
    shared = fasttito.Tokenizer.from_dir(QWEN)
    results: dict[tuple[int, int], list[int]] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for job in jobs:
                if job[0] % 4 == worker:
                    results[job] = shared.apply_chat_template(conversation(*job))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert results == expected
