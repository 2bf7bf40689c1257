"""``fasttito.verifiers.OpenAIChatCompletionsTokenClient`` as a drop-in for verifiers 0.3.1's
class: verifiers' own test module run against it, ``renderer_transport`` selection, the two
symmetric-normalization cases (transformers as the oracle of the stitched ids), and the import
boundary (``import fasttito`` never imports verifiers).

verifiers' test module is fetched from PyPI (``pip download --no-binary :all: verifiers==0.3.1``)
at test time, not vendored; a failed download fails the test.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "models" / "qwen2.5"
VERIFIERS_VERSION = "0.3.1"
UPSTREAM_TEST = "tests/test_openai_chat_completions_token_client.py"
UPSTREAM_IMPORT = (
    "from verifiers.clients.openai_chat_completions_token_client import (\n"
    "    OpenAIChatCompletionsTokenClient,\n"
    ")"
)
FASTTITO_IMPORT = "from fasttito.verifiers import (\n    OpenAIChatCompletionsTokenClient,\n)"
IM_END = 151645

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------- import boundary


def test_importing_fasttito_never_imports_verifiers() -> None:
    code = (
        "import sys, fasttito, fasttito.client, fasttito.trajectory, fasttito.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('verifiers', 'openai'))\n"
        "assert not bad, bad\n"
        "import fasttito.verifiers\n"
        "assert 'verifiers' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# --------------------------------------------------------------------------- verifiers' own tests


@pytest.fixture(scope="module")
def upstream_test_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """verifiers' test module for this class, from the sdist on PyPI, with only its import
    line pointed at fasttito."""
    where = tmp_path_factory.mktemp("verifiers-sdist")
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(where),
            f"verifiers=={VERIFIERS_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if got.returncode != 0:
        pytest.fail(f"could not download the verifiers sdist from PyPI:\n{got.stderr[-3000:]}")
    (sdist,) = where.glob("verifiers-*.tar.gz")
    with tarfile.open(sdist) as tar:
        member = tar.getmember(f"verifiers-{VERIFIERS_VERSION}/{UPSTREAM_TEST}")
        fh = tar.extractfile(member)
        assert fh is not None
        text = fh.read().decode()
    assert text.count(UPSTREAM_IMPORT) == 1, "the upstream import line moved; update the test"
    out = where / "run" / "test_upstream_token_client.py"
    out.parent.mkdir()
    out.write_text(text.replace(UPSTREAM_IMPORT, FASTTITO_IMPORT))
    (out.parent / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    return out


def test_verifiers_own_test_module_passes(upstream_test_file: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(upstream_test_file.parent / "pytest.ini"),
            "--rootdir",
            str(upstream_test_file.parent),
            str(upstream_test_file),
        ],
        capture_output=True,
        text=True,
        cwd=upstream_test_file.parent,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "4 passed" in result.stdout, result.stdout[-3000:]


def test_upstream_module_really_targets_fasttito(upstream_test_file: Path) -> None:
    text = upstream_test_file.read_text()
    assert FASTTITO_IMPORT in text and UPSTREAM_IMPORT not in text
    # and the upstream tests would catch a class that ignores its trajectory
    assert "test_get_prompt_ids_uses_largest_message_prefix_match" in text


# --------------------------------------------------------------------------- renderer_transport


class _FakeOpenAI:
    base_url = "http://127.0.0.1:9/v1"


def test_renderer_transport_default_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient as C

    monkeypatch.delenv("FASTTITO_RENDERER_TRANSPORT", raising=False)
    assert C(_FakeOpenAI()).transport == "vllm-chat-tokens"
    assert C(_FakeOpenAI()).renderer_transport == "prime_vllm_generate"
    for name, want in [
        ("prime_vllm_generate", "vllm-chat-tokens"),
        ("vllm", "vllm-chat-tokens"),
        ("dynamo_chat_nvext", "dynamo-nvext"),
        ("dynamo", "dynamo-nvext"),
        ("dynamo_chat", "dynamo-nvext"),
    ]:
        assert C(_FakeOpenAI(), renderer_transport=name).transport == want


def test_renderer_transport_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient as C
    from pydantic import ConfigDict
    from verifiers.legacy.types import ClientConfig

    class ExtraConfig(ClientConfig):  # verifiers 0.3.1 has no such field: an extra attribute
        model_config = ConfigDict(extra="allow")

    class FieldConfig(ClientConfig):  # the field as vf #1574 adds it
        renderer_transport: str = "vllm"

    base = "http://127.0.0.1:9/v1"
    monkeypatch.setenv("FASTTITO_RENDERER_TRANSPORT", "dynamo")
    # env var when nothing else names one
    assert C(_FakeOpenAI()).renderer_transport == "dynamo"
    # the keyword beats the env var
    assert C(_FakeOpenAI(), renderer_transport="vllm").renderer_transport == "vllm"
    # the config beats both
    cfg = ExtraConfig(api_base_url=base, renderer_transport="prime_vllm_generate")
    assert C(cfg, renderer_transport="dynamo").renderer_transport == "prime_vllm_generate"
    assert C(FieldConfig(api_base_url=base), renderer_transport="dynamo").transport == (
        "vllm-chat-tokens"
    )
    # a plain 0.3.1 ClientConfig carries none: the keyword decides
    plain = ClientConfig(api_base_url=base, renderer_model_name=str(MODEL_DIR))
    client = C(plain, renderer_transport="dynamo_chat_nvext")
    assert client.transport == "dynamo-nvext"
    assert client.renderer_model_name == str(MODEL_DIR)


def test_unknown_renderer_transport_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import fasttito
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient as C

    monkeypatch.delenv("FASTTITO_RENDERER_TRANSPORT", raising=False)
    with pytest.raises(fasttito.ConfigError) as err:
        C(_FakeOpenAI(), renderer_transport="sglang")
    text = str(err.value)
    assert "'sglang'" in text and "renderer_transport=" in text
    for name in ("prime_vllm_generate", "dynamo_chat_nvext", "vllm", "dynamo"):
        assert name in text
    monkeypatch.setenv("FASTTITO_RENDERER_TRANSPORT", "nope")
    with pytest.raises(fasttito.ConfigError, match="FASTTITO_RENDERER_TRANSPORT"):
        C(_FakeOpenAI())


def test_dynamo_needs_a_local_model_folder(tmp_path: Path) -> None:
    import fasttito
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient as C

    client = C(_FakeOpenAI(), renderer_transport="dynamo", renderer_model_name=str(tmp_path))
    with pytest.raises(fasttito.ConfigError, match="not a local model folder"):
        run(client.tokenize("hi", None, "Qwen/Qwen2.5-7B-Instruct"))


# --------------------------------------------------------------------------- normalization


def _oracle() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MODEL_DIR))


def _render(tok: Any, messages: list[dict[str, Any]], gen: bool) -> list[int]:
    out = tok.apply_chat_template(
        messages, tools=[TOOL], add_generation_prompt=gen, tokenize=True, return_dict=False
    )
    return list(out["input_ids"] if isinstance(out, dict) else out)


def _turn1_ids(tok: Any, user: dict[str, Any], asst: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Turn 1's prompt and completion ids as an engine samples them (the assistant turn as the
    template renders it, up to and including <|im_end|>)."""
    prompt = _render(tok, [user], True)
    full = _render(tok, [user, asst], False)
    assert full[: len(prompt)] == prompt
    rest = full[len(prompt) :]
    return prompt, rest[: rest.index(IM_END) + 1]


def _conversation() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    user = {"role": "user", "content": "Weather in Paris?"}
    asst = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    tool = {"role": "tool", "tool_call_id": "call00001", "content": "18C, sunny"}
    return user, asst, tool


@pytest.mark.parametrize("steps_as", ["vf_messages", "dicts"])
def test_symmetric_normalization_stitches(steps_as: str) -> None:
    """Trajectory steps of Pydantic ``vf.Message`` (``thinking_blocks=None``, ``content=None``,
    flat ``vf.ToolCall``) against a prompt of plain dicts (``content: ""``, compact JSON
    arguments), and the reverse, must prefix-match; the stitched ids equal transformers' full
    render (qwen2.5 is history-stable for tool tails)."""
    import fasttito
    import verifiers as vf
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient

    oracle = _oracle()
    user, asst, tool = _conversation()
    prompt_ids, completion_ids = _turn1_ids(oracle, user, asst)

    vf_user = vf.UserMessage(content=user["content"])
    vf_asst = vf.AssistantMessage(
        content=None,
        tool_calls=[vf.ToolCall(id="call00001", name="get_weather", arguments='{"city":"Paris"}')],
    )
    vf_tool = vf.ToolMessage(tool_call_id="call00001", content=tool["content"])
    assert vf_asst.thinking_blocks is None and vf_asst.reasoning_content is None

    if steps_as == "vf_messages":
        step_prompt, step_completion = [vf_user], [vf_asst]
        prompt: list[Any] = [user, asst, tool]
    else:
        step_prompt, step_completion = [user], [asst]
        prompt = [vf_user, vf_asst, vf_tool]
    state = {
        "model": "m",
        "trajectory": [
            {
                "prompt": step_prompt,
                "completion": step_completion,
                "tokens": {"prompt_ids": prompt_ids, "completion_ids": completion_ids},
                "response": None,
            }
        ],
    }
    client = OpenAIChatCompletionsTokenClient(_FakeOpenAI(), tokenizer=MODEL_DIR)
    fasttito.reset_metrics()
    ids = run(client.get_prompt_ids(state, prompt, [TOOL]))
    assert ids is not None, fasttito.metrics()
    assert ids[: len(prompt_ids) + len(completion_ids)] == prompt_ids + completion_ids
    assert ids == _render(oracle, [user, asst, tool], True)
    # planned, not sent: a turn counts in the metrics once it completed
    assert fasttito.metrics().get("tito") == 0


def test_remote_bridge_tokenization_goes_through_tokenize() -> None:
    """Without a local tokenizer the bridge is tokenized by ``self.tokenize`` (verifiers'
    ``/tokenize`` calls, here answered by transformers), twice per turn, with the generation
    prompt only on the first call."""
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient

    oracle = _oracle()
    calls: list[dict[str, Any]] = []

    class Remote(OpenAIChatCompletionsTokenClient):  # type: ignore[misc]
        async def tokenize(  # type: ignore[no-untyped-def]
            self, messages, tools, model, extra_kwargs=None, **kw
        ):
            extra = dict(extra_kwargs or {})
            calls.append({"messages": messages, "tools": tools, "model": model, **extra})
            gen = extra.get("add_generation_prompt", True)
            return _render(oracle, list(messages), gen)

    user, asst, tool = _conversation()
    prompt_ids, completion_ids = _turn1_ids(oracle, user, asst)
    state = {
        "model": "served-name",
        "trajectory": [
            {
                "prompt": [user],
                "completion": [asst],
                "tokens": {"prompt_ids": prompt_ids, "completion_ids": completion_ids},
            }
        ],
    }
    ids = run(Remote(_FakeOpenAI()).get_prompt_ids(state, [user, asst, tool], [TOOL]))
    assert ids == _render(oracle, [user, asst, tool], True)
    assert [c.get("add_generation_prompt", True) for c in calls] == [True, False]
    assert all(c["model"] == "served-name" for c in calls)
    assert calls[0]["messages"][0]["role"] == "assistant"  # the dummy, not the sampled turn
    assert calls[0]["messages"][1:] == [tool]
