"""fasttito.renderers (a renderers 0.1.12 renderer and generate) and training samples.

* renderers' own ``tests/test_client.py`` (from its sdist on PyPI) runs against
  ``fasttito.renderers.generate`` with only its import line rewritten;
* on every model folder: ``render`` ids equal transformers', the attribution puts the sampled ids
  on assistant messages, ``bridge_to_next_turn`` equals the E.2 reference (``docs/wire.md`` E.2)
  or is None, never wrong, and a rollout's loss mask marks exactly the sampled ids;
* ``Rollout.trajectories`` / ``ClientRollout.trajectory`` against the local engine.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import fasttito
import numpy as np
import pytest
from conftest import VENDORED_MODEL_DIR, ModelRef, require_folder
from fasttito.testing.launch import start_engine

RENDERERS_VERSION = "0.1.12"
UPSTREAM_TEST = "tests/test_client.py"
UPSTREAM_IMPORT = "from renderers.client import generate\n"
FASTTITO_IMPORT = "from fasttito.renderers import generate\n"
# Not text-only: process_multimodal=False is refused by fasttito (test below); the feature
# serializers need vLLM, torch and hub models.
UPSTREAM_DESELECT = [
    "test_generate_process_multimodal_false_sends_content_parts",
    "test_generate_serializes_multimodal_features_for_qwen_vl_family",
    "test_generate_serializes_multimodal_features_for_gemma4",
    "test_generate_serializes_nemotron_dynamic_image_features",
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def _call(i: int, city: str) -> dict[str, Any]:
    # 9 alphanumerics: Mistral's template rejects other ids
    return {
        "id": f"call{i:05d}",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": city}},
    }


def _result(i: int, city: str) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": f"call{i:05d}",
        "name": "get_weather",
        "content": json.dumps({"city": city, "temp_c": 18}),
    }


# --------------------------------------------------------------------------- import hygiene


def test_import_fasttito_does_not_import_renderers() -> None:
    code = (
        "import sys, fasttito, fasttito.client, fasttito.rollout\n"
        "assert 'renderers' not in sys.modules and 'fasttito.renderers' not in sys.modules\n"
        "import fasttito.renderers\n"
        "assert 'renderers' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# --------------------------------------------------------------------------- renderers' own tests


@pytest.fixture(scope="module")
def upstream_test_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """renderers' test module for generate, from its sdist, with the import pointed at fasttito."""
    where = tmp_path_factory.mktemp("renderers-sdist")
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
            f"renderers=={RENDERERS_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if got.returncode != 0:
        pytest.fail(f"could not download the renderers sdist from PyPI:\n{got.stderr[-3000:]}")
    (sdist,) = where.glob("renderers-*.tar.gz")
    with tarfile.open(sdist) as tar:
        fh = tar.extractfile(tar.getmember(f"renderers-{RENDERERS_VERSION}/{UPSTREAM_TEST}"))
        assert fh is not None
        text = fh.read().decode()
    assert text.count(UPSTREAM_IMPORT) == 1, "the upstream import line moved; update the test"
    out = where / "run" / "test_upstream_renderers_client.py"
    out.parent.mkdir()
    out.write_text(text.replace(UPSTREAM_IMPORT, FASTTITO_IMPORT))
    (out.parent / "pytest.ini").write_text("[pytest]\n")
    return out


def test_renderers_own_generate_tests_pass(upstream_test_file: Path) -> None:
    text = upstream_test_file.read_text()
    assert FASTTITO_IMPORT in text and UPSTREAM_IMPORT not in text
    for name in UPSTREAM_DESELECT:
        assert f"def {name}(" in text, f"{name} is gone upstream; update UPSTREAM_DESELECT"
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
            "-k",
            " and ".join(f"not {n}" for n in UPSTREAM_DESELECT),
            str(upstream_test_file),
        ],
        capture_output=True,
        text=True,
        cwd=upstream_test_file.parent,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    # every text-only test ran and passed: none skipped
    assert "24 passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-3000:]


def test_generate_refuses_multimodal_clearly() -> None:
    from fasttito.renderers import generate

    with pytest.raises(NotImplementedError, match="text prompts only"):
        asyncio.run(
            generate(
                client=object(),
                renderer=object(),
                messages=[],
                model="m",
                process_multimodal=False,
            )
        )


# --------------------------------------------------------------------------- loading


def _renderer(folder: Path, hf: Any = None, **fields: Any) -> Any:
    from renderers import create_renderer
    from renderers.configs import CustomRendererConfig

    class _Tok:  # what renderers hands a custom renderer: a tokenizer with name_or_path
        name_or_path = str(folder)

    return create_renderer(
        hf if hf is not None else _Tok(),
        CustomRendererConfig(import_path="fasttito.renderers.Renderer", **fields),
    )


def test_loads_through_create_renderer_and_validates() -> None:
    import fasttito.renderers as fr
    from fasttito.errors import ConfigError

    r = _renderer(VENDORED_MODEL_DIR)
    assert isinstance(r, fr.Renderer)
    assert r.get_stop_token_ids() == fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR).stop_token_ids
    assert r.is_prefix_stable is True
    # a lazily attributed render pickles and copies with its attribution
    import copy
    import pickle

    rendered = r.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    for clone in (pickle.loads(pickle.dumps(rendered)), copy.deepcopy(rendered)):
        assert clone == rendered and clone.message_indices == rendered.message_indices
        assert clone.message_indices[0] == 0 and clone.message_indices[-1] == -1
    # a config field that is not the renderer's is a template variable, passed through
    r2 = _renderer(VENDORED_MODEL_DIR, model_dir=str(VENDORED_MODEL_DIR), greeting="x")
    assert r2._kwargs == {"greeting": "x"}
    with pytest.raises(ConfigError, match="model folder"):
        _renderer(Path("/nonexistent-model-folder"))


# --------------------------------------------------------------------------- model matrix


def _e2_reference(hf: Any, prev: list[int], tail: list[dict[str, Any]]) -> list[int] | None:
    """docs/wire.md E.2 written from the spec with transformers (the dummy carries the tail's tool
    names and tries mapping arguments before string ones, as fasttito's bridge.rs does)."""
    ids = [m["tool_call_id"] for m in tail if m["role"] == "tool"]
    names = {m["tool_call_id"]: m.get("name", "f") for m in tail if m["role"] == "tool"}
    for args in ({}, "{}"):
        dummy: dict[str, Any] = (
            {
                "role": "assistant",
                "reasoning_content": "",
                "tool_calls": [
                    {"id": i, "type": "function", "function": {"name": names[i], "arguments": args}}
                    for i in ids
                ],
            }
            if ids
            else {"role": "assistant", "reasoning_content": "", "content": "x"}
        )
        try:
            full = _hf_ids(hf, [dummy, *tail], add_generation_prompt=True)
            base = _hf_ids(hf, [dummy], add_generation_prompt=False)
        except Exception:
            continue
        if full[: len(base)] != base:
            return None
        stop = prev[-1]
        gap = 0
        for i in range(len(base) - 1, -1, -1):
            if base[i] == stop:
                gap = len(base) - i - 1
                break
        bridge = full[len(base) - gap :]
        if bridge and bridge[0] == stop:
            bridge = bridge[1:]
        return prev + bridge
    return None


def _hf_ids(hf: Any, messages: list[dict[str, Any]], **kw: Any) -> list[int]:
    out = hf.apply_chat_template(messages, tools=TOOLS, tokenize=True, return_dict=False, **kw)
    return list(out)


def _conversation(family: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    conv = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    if family.startswith("mistral"):  # its system prompt moves to the last user turn
        conv = conv[1:]
    if family.startswith("deepseek"):  # transformers 5.x cannot render their tool calls
        return conv, {"role": "assistant", "content": "It is sunny in Paris."}
    return conv, {"role": "assistant", "content": "", "tool_calls": [_call(1, "Paris")]}


def _sampled_turn(hf: Any, conv: list[dict[str, Any]], asst: dict[str, Any], stops: list[int]):
    """The template's own rendering of ``asst`` after ``conv``'s generation prompt, cut after
    its first stop token (what a template-following model samples)."""
    prompt = _hf_ids(hf, conv, add_generation_prompt=True)
    full = _hf_ids(hf, [*conv, asst])
    assert full[: len(prompt)] == prompt
    rest = full[len(prompt) :]
    cut = next((i for i, t in enumerate(rest) if t in stops), None)
    return prompt, rest if cut is None else rest[: cut + 1]


def test_matrix_render_bridge_and_loss_mask(
    model: ModelRef, hf_tokenizer_for: Any, ft_tokenizer_for: Any
) -> None:
    folder = require_folder(model)
    hf = hf_tokenizer_for(model)
    r = _renderer(folder)
    stops = r.get_stop_token_ids()
    conv, asst = _conversation(model.family)
    tail: list[dict[str, Any]] = (
        [_result(1, "Paris")] if asst.get("tool_calls") else [{"role": "user", "content": "Rome?"}]
    )
    messages = [*conv, asst, *tail]

    # render: transformers' ids; attribution: sampled ids on the assistant message
    rendered = r.render(messages, tools=TOOLS, add_generation_prompt=True)
    assert rendered.token_ids == _hf_ids(hf, messages, add_generation_prompt=True)
    assert r.render_ids(messages, tools=TOOLS) == _hf_ids(hf, messages)
    n = len(rendered.token_ids)
    assert len(rendered.message_indices) == n and len(rendered.sampled_mask) == n
    assert rendered.message_roles == [m["role"] for m in messages]
    real = [i for i in rendered.message_indices if i >= 0]
    assert real == sorted(real) and set(real) <= set(range(len(messages)))
    if n > len(_hf_ids(hf, messages)):  # Mistral's template adds no generation prompt
        assert rendered.message_indices[-1] == -1
    sampled = [t for t, s in zip(rendered.token_ids, rendered.sampled_mask, strict=True) if s]
    on = {i for i, s in zip(rendered.message_indices, rendered.sampled_mask, strict=True) if s}
    assert on <= {len(conv)}
    prompt, completion = _sampled_turn(hf, conv, asst, stops)
    if r.is_prefix_stable and completion and completion[-1] in stops:
        # (a template that rewrites history renders the turn otherwise once more follows)
        assert sampled == completion, (hf.decode(sampled), hf.decode(completion))

    # bridge: E.2 reference where TITO is safe, None (never wrong) elsewhere
    bridge = r.bridge_to_next_turn(prompt, completion, tail, tools=TOOLS)
    if not completion or completion[-1] not in stops:
        assert bridge is None
    else:
        want = _e2_reference(hf, prompt + completion, tail)
        assert (bridge.token_ids if bridge is not None else None) == want
    if bridge is not None:
        head = len(prompt) + len(completion)
        assert bridge.token_ids[:head] == prompt + completion
        assert bridge.message_indices[:head] == [-1] * head
        assert not any(bridge.sampled_mask) and len(bridge.sampled_mask) == len(bridge.token_ids)
        assert set(bridge.message_indices[head:]) <= {-1, *range(len(tail))}
        if r.is_prefix_stable:
            assert bridge.token_ids == _hf_ids(hf, messages, add_generation_prompt=True)

    # a rollout of the same turns: the loss mask is exactly on the sampled ids
    tok = ft_tokenizer_for(model)
    rollout = fasttito.Rollout(tok)
    plan = rollout.prepare(conv, TOOLS)
    lp1 = [-0.5] * len(completion)
    rollout.record(plan, completion, asst, "stop", logprobs=lp1)
    plan2 = rollout.prepare(messages, TOOLS)
    completion2 = [*tok.encode("Done."), stops[0]]
    rollout.record(plan2, completion2, {"role": "assistant", "content": "Done."}, "stop")
    samples = rollout.trajectories()
    if plan2.mode == "tito":
        (sample,) = samples
        head = prompt + completion
        assert list(sample.token_ids) == [*plan2.prompt_ids, *completion2]
        mask = np.frombuffer(sample.loss_mask, dtype=np.uint8)
        want_mask = np.zeros(len(sample), np.uint8)
        want_mask[len(prompt) : len(head)] = 1
        want_mask[len(sample) - len(completion2) :] = 1
        assert (mask == want_mask).all()
    else:
        assert len(samples) == 2 and plan2.fallback_reason is not None
        assert [sum(s.loss_mask) for s in samples] == [len(completion), len(completion2)]
    logprobs = np.frombuffer(samples[-1].logprobs, dtype=np.float32)
    assert np.isnan(logprobs[np.frombuffer(samples[-1].loss_mask, np.uint8) == 0]).all()
    idx = np.frombuffer(samples[-1].message_indices, dtype=np.int32)
    assert (idx[-len(completion2) :] == len(messages)).all()


# --------------------------------------------------------------------------- trajectories


def test_trajectory_rule_tito_extends_mito_starts_a_sample() -> None:
    tok = fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)
    stop = tok.stop_token_ids[0]
    rollout = fasttito.Rollout(tok)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    lengths = []
    for k in range(3):
        tools = TOOLS if k < 2 else [*TOOLS, {**TOOLS[0], "function": {**TOOLS[0]["function"]}}]
        plan = rollout.prepare(msgs, tools)
        asst = {"role": "assistant", "content": f"answer {k}"}
        completion = [*tok.encode(f"answer {k}"), stop]
        rollout.record(plan, completion, asst, "stop", logprobs=[-0.25] * len(completion))
        lengths.append((plan.mode, len(plan.prompt_ids or []), len(completion)))
        msgs += [asst, {"role": "user", "content": f"and {k}?"}]
    # turn 3 changed the tools: sent as messages, so a second sample
    assert [m for m, _, _ in lengths] == ["mito", "tito", "mito"]
    with pytest.raises(fasttito.TrajectoryError, match="trajectories"):
        rollout.trajectory()
    first, second = rollout.trajectories()
    mask = np.frombuffer(first.loss_mask, np.uint8)
    assert mask.sum() == lengths[0][2] + lengths[1][2]
    assert np.shares_memory(mask, np.frombuffer(first.loss_mask, np.uint8))
    assert np.frombuffer(first.token_ids, np.uint32).tolist() == list(first.token_ids)
    lp = np.frombuffer(first.logprobs, np.float32)
    assert (lp[mask == 1] == -0.25).all() and np.isnan(lp[mask == 0]).all()
    idx = np.frombuffer(first.message_indices, np.int32)
    # the second turn's sampled ids belong to message 2, the first turn's to message 1
    assert set(idx[mask == 1].tolist()) == {1, 3}
    assert len(second) == lengths[2][1] + lengths[2][2] and sum(second.loss_mask) == lengths[2][2]


def test_client_rollout_trajectory_against_the_local_engine() -> None:
    tok = fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)

    async def main(base: str) -> tuple[list[fasttito.Turn], Any]:
        async with fasttito.Client(
            base + "/v1", "m", transport="vllm-generate", tokenizer=VENDORED_MODEL_DIR
        ) as client:
            rollout = client.rollout()
            msgs: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
            turns = []
            for _ in range(4):
                turn = await rollout.generate(msgs, tools=TOOLS, max_tokens=64)
                turns.append(turn)
                msgs.append(turn.message())
                for tc in turn.tool_calls or []:
                    msgs.append({"role": "tool", "tool_call_id": tc["id"], "content": "sunny"})
                if not turn.tool_calls:
                    msgs.append({"role": "user", "content": "And Rome?"})
            return turns, rollout.trajectory()

    with start_engine(VENDORED_MODEL_DIR, served_model_name="m") as eng:
        turns, sample = asyncio.run(main(eng.base_url))
    assert [t.mode for t in turns] == ["mito", "tito", "tito", "tito"]
    last = turns[-1]
    assert list(sample.token_ids) == [*last.prompt_ids, *last.completion_ids]
    mask = list(sample.loss_mask)
    lps = list(sample.logprobs)
    pos = 0
    for turn in turns:  # each turn's completion sits at the end of its own prompt
        start = len(turn.prompt_ids)
        assert mask[pos:start] == [0] * (start - pos)
        end = start + len(turn.completion_ids)
        assert mask[start:end] == [1] * (end - start)
        want = turn.completion_logprobs or []
        assert all(
            math.isclose(a, b, rel_tol=1e-6) for a, b in zip(lps[start:end], want, strict=True)
        )
        pos = end
    assert pos == len(sample)
    assert tok.decode(list(sample.token_ids)).endswith(tok.decode(list(last.completion_ids)))


def test_generate_8_turn_tool_rollout_over_openai_against_the_local_engine() -> None:
    """renderers' loop (render turn 1, bridge every later turn, generate with prompt_ids) with
    fasttito's renderer and generate over a real openai.AsyncOpenAI and the local engine (vLLM
    0.32's tokens-mode logprob entries): every turn from the second is bridged, and for this
    history-stable template equals the full render."""
    import openai
    from fasttito.renderers import generate

    r = _renderer(VENDORED_MODEL_DIR)
    tok = fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)

    async def main(base: str) -> list[dict[str, Any]]:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused")
        msgs: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris?"},
        ]
        results: list[dict[str, Any]] = []
        prev: dict[str, Any] | None = None
        start = 0
        for _ in range(8):
            kw: dict[str, Any] = {}
            if prev is not None:
                bridged = r.bridge_to_next_turn(
                    prev["prompt_ids"], prev["completion_ids"], msgs[start:], tools=TOOLS
                )
                assert bridged is not None
                assert bridged.token_ids == tok.apply_chat_template(
                    msgs, TOOLS, add_generation_prompt=True
                )
                kw = {"prompt_ids": bridged.token_ids, "prompt_attribution": bridged}
            out = await generate(
                client=client,
                renderer=r,
                messages=msgs,
                model="m",
                tools=TOOLS,
                sampling_params={"max_tokens": 64, "temperature": 1.0},
                **kw,
            )
            results.append(out)
            calls = [tc for tc in out["tool_calls"] if tc.status == "ok"]
            msgs.append(
                {
                    "role": "assistant",
                    "content": out["content"],
                    "tool_calls": [
                        {
                            "id": f"call{k:05d}",
                            "type": "function",
                            "function": {"name": tc.name, "arguments": tc.arguments},
                        }
                        for k, tc in enumerate(calls)
                    ],
                }
                if calls
                else {"role": "assistant", "content": out["content"]}
            )
            start = len(msgs)
            for k, _tc in enumerate(calls):
                msgs.append({"role": "tool", "tool_call_id": f"call{k:05d}", "content": "sunny"})
            if not calls:
                msgs.append({"role": "user", "content": "And Rome?"})
            prev = out
        await client.close()
        return results

    with start_engine(VENDORED_MODEL_DIR, served_model_name="m") as eng:
        results = asyncio.run(main(eng.base_url))
    for out in results:
        ids = out["completion_ids"]
        assert ids and len(out["completion_logprobs"]) == len(ids)
        assert all(math.isfinite(x) for x in out["completion_logprobs"])
        assert out["finish_reason"] in ("stop", "tool_calls")
        assert out["finish_reason"] != "tool_calls" or out["tool_calls"]
    assert any(out["finish_reason"] == "tool_calls" for out in results)


def test_verifiers_04_train_client_with_the_fasttito_renderer(tmp_path: Path) -> None:
    """verifiers 0.4.0's TrainClient, configured with fasttito's renderer, runs an 8-turn tool
    rollout against the local engine; every turn from the second is bridged and equals the full
    render (tests/peers/verifiers04_train_client.py, in the venv of scripts/install-peers.sh)."""
    root = Path(__file__).resolve().parent.parent
    python = getattr(sys, "_base_executable", sys.executable)
    got = subprocess.run(
        ["bash", str(root / "scripts" / "install-peers.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHON": python},
    )
    assert got.returncode == 0, got.stderr[-3000:]
    venv = Path(got.stdout.strip().splitlines()[-1].split("=", 1)[1])
    # the build under test, alone on the path (the venv has no fasttito of its own)
    (tmp_path / "fasttito").symlink_to(Path(fasttito.__file__).resolve().parent)
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            str(root / "tests" / "peers" / "verifiers04_train_client.py"),
            str(VENDORED_MODEL_DIR),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stdout.strip().splitlines()[-1] == "OK 8", result.stdout[-3000:]
