"""The `fasttito` command line, run as a user runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fasttito import _core
from fasttito.bench import SUITES
from fasttito.testing import dynamo_importable

REPO = Path(__file__).resolve().parents[1]
VENDORED = REPO / "models" / "qwen2.5"
SHARED = Path(os.environ.get("FASTTITO_MODELS") or REPO / "models")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fasttito", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env=full_env,
    )


# -- demo ---------------------------------------------------------------------------------------


def _rows(stdout: str) -> list[list[str]]:
    """The per-turn table: lines starting with a turn number."""
    return [
        line.split()
        for line in stdout.splitlines()
        if re.match(r"\s*\d+\s+\S+\s+(tito|mito)", line)
    ]


def test_demo_runs_a_tito_rollout_over_every_transport() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "renders with transformers" in out  # the test environment's oracle
    rows = _rows(out)
    by_transport: dict[str, list[list[str]]] = {}
    for row in rows:
        by_transport.setdefault(row[1], []).append(row)
    expected = ["vllm-generate", "vllm-chat-tokens", "chat", "sglang-generate"]
    assert "local SGLang-compatible engine: pid" in out
    if dynamo_importable() or os.environ.get("FASTTITO_REQUIRE_DYNAMO"):
        expected.append("dynamo-nvext")
        assert "NVIDIA Dynamo frontend: pids" in out and "Dynamo stopped" in out
    else:
        assert "dynamo-nvext: skipped, the NVIDIA Dynamo frontend is not installed" in out
    assert sorted(by_transport) == sorted(expected)
    for transport, turns in by_transport.items():
        # a tool loop (2 calls, answer), a follow-up question, another loop: 6 turns
        assert len(turns) >= 4, (transport, turns)
        assert [int(t[0]) for t in turns] == list(range(1, len(turns) + 1))
        assert all(t[-1] == "yes" for t in turns), (
            f"{transport}: a prompt differs from the full render"
        )
        if transport == "chat":
            assert all(t[2] == "mito" and t[3] == "chat_transport" for t in turns)
            continue
        assert turns[0][2:4] == ["mito", "first_turn"]
        for t in turns[1:]:
            mode, reason, prompt, reused, bridge = t[2], t[3], t[4], t[5], t[6]
            assert (mode, reason) == ("tito", "-"), (transport, t)
            n = lambda s: int(s.replace(",", ""))  # noqa: E731
            assert n(reused) + n(bridge) == n(prompt) and n(reused) > n(bridge) > 0
        assert f"{transport}: {len(turns)} turns, {len(turns) - 1} token-in (TITO)" in out
        cached = [t[-2] for t in turns]
        if transport == "sglang-generate":  # the engine's prefix cache: growing every turn
            hits = [int(c.replace(",", "")) for c in cached]
            assert hits[0] == 0 and all(b > a for a, b in itertools.pairwise(hits))
        else:
            assert set(cached) == {"-"}, (transport, cached)
    assert re.search(r"engine pid \d+ stopped", out)


def test_demo_runs_from_a_wheel_without_transformers(tmp_path: Path) -> None:
    # transformers cannot be imported: the local engine renders with fasttito.Tokenizer
    fake = tmp_path / "transformers"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('transformers is not installed here')\n")
    result = run(
        "demo",
        "--transport",
        "vllm-generate",
        env={"PYTHONPATH": str(tmp_path), "FASTTITO_ENGINE_RENDERER": "auto"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "renders with fasttito" in result.stdout
    rows = _rows(result.stdout)
    assert {r[1] for r in rows} == {"vllm-generate"} and len(rows) >= 4
    assert [r[2] for r in rows[1:]] == ["tito"] * (len(rows) - 1)


def test_demo_reports_a_missing_model_folder(tmp_path: Path) -> None:
    result = run("demo", "--model", str(tmp_path))
    assert result.returncode == 2
    assert "is not a model folder: no tokenizer.json" in result.stderr


# -- doctor -------------------------------------------------------------------------------------

# What docs/models.md ("What TITO can promise per family") says, per folder:
# shapes whose stitched ids must equal the full render, and other outcomes that must appear.
DOCTOR_EXPECTED: dict[str, dict[str, str]] = {
    "qwen2.5": {
        "tool tail": "exact",
        "tool + user tail": "exact",
        "user tail after an answer": "exact",
        "parallel calls": "exact",
    },
    "llama-3.2": {
        "tool tail": "exact",
        "tool + user tail": "exact",
        "user tail after an answer": "exact",
        "parallel calls": "unsupported",  # the template raises on parallel calls
    },
    "qwen3": {
        "reasoning, tool tail": "exact",  # stable when every assistant turn has reasoning
        "enable_thinking=True, tool tail": "exact",
        "tool tail": "rewrites history",  # <think></think> only while the turn is last
        "reasoning, user tail": "rewrites history",  # reasoning before the last user dropped
    },
    "qwen3-coder": {"tool tail": "exact", "parallel calls": "exact"},
    "mistral-nemo": {
        "tool tail, no system message": "exact",
        "tool tail": "rewrites history",  # the system prompt moves to the last user turn
        "tool + user tail": "unsupported",  # roles must alternate
    },
    # <|call|> ends a tool call but is not among the folder's stop ids (no generation_config)
    "gpt-oss": {"tool tail": "falls back"},
    # The bridge dummy carries content "" (templates that concatenate content need it): these
    # templates render it as a plain assistant turn, and the tool outputs after it do not
    # depend on the turn before, so the bridge renders and equals the full render.
    "deepseek-v3": {"tool tail": "exact", "user tail after an answer": "exact"},
    "deepseek-r1": {"tool tail": "exact", "user tail after an answer": "exact"},
}


def _model_folders() -> list[Path]:
    folders = sorted(p.parent for p in SHARED.glob("*/tokenizer.json"))
    assert folders, f"no model folders in {SHARED} (set FASTTITO_MODELS)"
    return folders


def _doctor_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = run("doctor", "--json", *args)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("folder", _model_folders(), ids=lambda p: p.name)
def test_doctor_on_every_model_folder(folder: Path) -> None:
    code, report = _doctor_json(str(folder))
    assert code == 0 == report["exit_code"], report["verdict"]
    status = {s["shape"]: s for s in report["shapes"]}
    assert len(status) >= 8
    for shape, want in DOCTOR_EXPECTED[folder.name].items():
        assert status[shape]["status"] == want, (shape, status[shape])
    for s in report["shapes"]:
        assert s["status"] != "WRONG", s
        if s["status"] == "exact":
            assert s["mode"] == "tito" and s["reused"] > 0 and s["bridge"] > 0
        if s["status"] == "rewrites history" and s["mode"] == "tito":
            # the first difference is inside the reused ids, decoded on both sides
            assert s["first_diff"] < s["reused"]
            assert "⟦" in s["stitched_context"] and "⟦" in s["rendered_context"]
            assert s["stitched_context"] != s["rendered_context"]
        if s["status"] == "falls back":
            assert s["mode"] == "mito" and s["fallback_reason"]
    assert report["stop_token_ids"]


def test_doctor_gpt_oss_with_its_call_stop_token() -> None:
    folder = SHARED / "gpt-oss"
    if not (folder / "tokenizer.json").is_file():
        # The same policy as the parity suite: a missing model matrix fails, never skips.
        pytest.fail(
            f"model folder gpt-oss not found under {SHARED} (set FASTTITO_MODELS to the model "
            "matrix, docs/models.md)",
            pytrace=False,
        )
    code, report = _doctor_json(
        str(folder), "--stop-token-id", "200002", "--stop-token-id", "200012"
    )
    status = {s["shape"]: s["status"] for s in report["shapes"]}
    assert code == 0
    assert status["tool tail"] == status["parallel calls"] == "exact"
    assert status["user tail after an answer"] == "falls back"


def _edited_model(tmp_path: Path, old: str, new: str) -> Path:
    """The vendored Qwen2.5 folder with its chat template edited (``old`` -> ``new``)."""
    folder = tmp_path / "qwen2.5-edited"
    folder.mkdir()
    shutil.copy(VENDORED / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((VENDORED / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert old in config["chat_template"]
    config["chat_template"] = config["chat_template"].replace(old, new)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_doctor_fails_a_template_whose_new_messages_depend_on_history(tmp_path: Path) -> None:
    # Each tool result carries its position in the conversation: the bridge, rendered after a
    # one-message dummy, gets other numbers than the full conversation does.
    folder = _edited_model(
        tmp_path,
        "{{- '\\n<tool_response>\\n' }}",
        "{{- '\\n<tool_response index=\"' ~ loop.index0 ~ '\">\\n' }}",
    )
    result = run("doctor", str(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL: TITO would be WRONG" in result.stdout
    code, report = _doctor_json(str(folder))
    assert code == 1
    status = {s["shape"]: s for s in report["shapes"]}
    wrong = status["tool tail"]
    assert wrong["status"] == "WRONG" and wrong["first_diff"] >= wrong["reused"]
    assert 'index="' in wrong["rendered_context"] + wrong["stitched_context"]
    assert status["user tail after an answer"]["status"] == "exact"  # no tool result there


def test_doctor_on_a_template_that_rewrites_history(tmp_path: Path) -> None:
    # The reasoning of a text answer is rendered only while that answer is the last message
    # (Qwen3's habit): a history rewrite. TITO keeps what the engine sampled, so this is not
    # an error unless --strict asks for re-render parity.
    folder = _edited_model(
        tmp_path,
        "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
        "{{- '<|im_start|>' + message.role + '\\n' + ('<think>' + message.reasoning_content + "
        "'</think>' if message.reasoning_content and loop.last else '') + message.content + "
        "'<|im_end|>' + '\\n' }}",
    )
    result = run("doctor", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reasoning, user tail: rewrites history" in result.stdout
    assert "user tail after an answer: exact" in result.stdout  # no reasoning, nothing rewritten
    stitched = re.search(
        r"reasoning, user tail: .*\n    stitched: (.*)\n    rendered: (.*)", result.stdout
    )
    assert stitched, result.stdout
    assert "⟦<think>" in stitched.group(1) and "<think>" not in stitched.group(2)
    assert "OK: TITO is safe" in result.stdout
    strict = run("doctor", "--strict", str(folder))
    assert strict.returncode == 1 and "FAIL:" in strict.stdout and "--strict" in strict.stdout


def test_doctor_reports_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    code, report = _doctor_json(str(tmp_path))
    assert code == 2 and "TokenizerLoadError" in report["error"]
    result = run("doctor", str(tmp_path))
    assert result.returncode == 2 and "no tokenizer.json" in result.stderr


def run_in_terminal(*args: str, timeout: float = 300) -> tuple[int, str]:
    """Runs ``fasttito ARGS`` with stdout and stderr on a pseudo-terminal, as in an interactive
    shell; returns the exit code and everything it wrote there."""
    import pty
    import select

    main, secondary = pty.openpty()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "COLUMNS": "100"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fasttito", *args],
        stdout=secondary,
        stderr=secondary,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env=env,
    )
    os.close(secondary)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([main], [], [], timeout)
            if not ready:
                raise AssertionError(f"fasttito {' '.join(args)} wrote nothing for {timeout} s")
            try:
                chunk = os.read(main, 1 << 16)
            except OSError:  # the child closed the terminal (EIO on Linux)
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(main)
        code = proc.wait(timeout)
    return code, out.decode("utf-8", errors="replace")


def test_progress_is_a_spinner_in_a_terminal_and_a_line_in_a_pipe() -> None:
    import rich  # noqa: F401  (the cli extra, part of the test extra: the spinner needs it)

    step = f"loading {VENDORED.relative_to(REPO)} and playing two turns per conversation shape"
    piped = run("doctor", str(VENDORED.relative_to(REPO)))
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert f"... {step}\n    done in " in piped.stderr
    assert "\x1b[" not in piped.stderr + piped.stdout  # no terminal codes in a pipe
    code, shown = run_in_terminal("doctor", str(VENDORED.relative_to(REPO)))
    assert code == 0, shown
    assert "\x1b[" in shown and any(frame in shown for frame in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")  # rich's spinner
    assert re.search(re.escape(step) + r": done in \d+\.\d s", shown), shown
    assert "OK: TITO is safe for this template" in shown  # the report itself, as in a pipe


# -- bench --------------------------------------------------------------------------------------


def test_bench_quick_template_table_and_plot(tmp_path: Path) -> None:
    plot = tmp_path / "bench.png"
    result = run(
        "bench", "template", "--quick", "--turns", "2", "--allow-debug", "--plot", str(plot)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "## template: Chat template render + tokenize" in out
    header = (
        "| model | turns | prompt tokens | text | transformers apply_chat_template | "
        "tokenizers encode only | fasttito cold (vs transformers) | "
        "fasttito +1 turn (vs transformers) |"
    )
    assert header in out
    assert re.search(
        r"\| qwen2\.5 \| 2 \| [\d,]+ \| [\d.]+ kB \| [\d.]+ ms \| .* \(\d+\.\dx\) \|", out
    )
    assert ("WARNING: debug build" in out) == (_core.build_profile == "debug")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot: {plot} (template)" in out


def test_bench_peer_suites_run_or_say_what_is_missing() -> None:
    result = run(
        "bench",
        "tito",
        "parse",
        "http",
        "verifiers",
        "renderers",
        "--quick",
        "--turns",
        "2",
        "--allow-debug",
    )
    out = result.stdout
    for suite, peer in (
        ("tito", "verifiers"),
        ("parse", "orjson"),
        ("http", "aiohttp"),
        ("verifiers", "verifiers"),
        ("renderers", "renderers"),
    ):
        assert f"## {suite}:" in out
        try:
            __import__(peer)
        except ImportError:
            assert f"skipped: {peer} is not installed" in out
        else:
            assert re.search(r"^\| .* \|$", out.split(f"## {suite}:")[1], re.M), out
    assert result.returncode in (0, 1), result.stderr


def test_bench_rejects_an_unknown_suite_and_a_debug_build() -> None:
    result = run("bench", "nosuch")
    assert result.returncode == 2 and "unknown suite nosuch" in result.stderr
    assert set(SUITES) >= {"template", "tito", "parse"}
    if _core.build_profile == "debug":
        result = run("bench", "template")
        assert result.returncode == 2 and "debug build" in result.stderr


def test_version_and_help() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"fasttito {_core.__version__}"
    result = run("--help")
    assert result.returncode == 0
    for command in ("demo", "doctor", "bench"):
        assert command in result.stdout


def test_the_commands_run_from_the_wheel_alone(tmp_path: Path) -> None:
    """The built wheel ships the commands, the test servers and the benchmarks, and `doctor`
    runs in a fresh virtualenv holding nothing but the wheel (no transformers, no aiohttp)."""
    import venv
    import zipfile

    wheels = sorted((REPO / "target" / "wheels").glob("fasttito-*.whl"))
    assert len(wheels) == 1, f"build the wheel first (scripts/bootstrap.sh); found {wheels}"
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for module in (
        "cli/__init__.py",
        "cli/demo.py",
        "cli/doctor.py",
        "cli/bench.py",
        "cli/_sample.py",
        "__main__.py",
        "testing/__init__.py",
        "testing/vllm_engine/__init__.py",
        "testing/vllm_engine/__main__.py",
        "testing/vllm_engine/routes.py",
        "testing/sglang_engine/__main__.py",
        "testing/engine_core/lifecycle.py",
        "testing/launch.py",
        "testing/dynamo_launch.py",
        "testing/dynamo_engine.py",
        "testing/renderer.py",
        "bench/__init__.py",
        "bench/template.py",
        "bench/tito.py",
        "bench/parse.py",
        "bench/http.py",
        "bench/verifiers_client.py",
    ):
        assert f"fasttito/{module}" in names, module
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            wheels[0],
        ],
        check=True,
    )
    result = subprocess.run(
        [python, "-m", "fasttito", "doctor", "--json", str(VENDORED)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {s["status"] for s in report["shapes"]} == {"exact"}


def test_doctor_shows_the_template_error_of_a_bridge(tmp_path: Path) -> None:
    # A template that rejects the bridge's dummy assistant turn (only it carries an empty
    # reasoning_content): every shape falls back, and doctor prints the template's own error.
    folder = _edited_model(
        tmp_path,
        "{%- for message in messages %}",
        "{%- for message in messages %}{%- if message.reasoning_content is defined and "
        "message.reasoning_content == '' %}{{ raise_exception('no empty reasoning here') }}"
        "{%- endif %}",
    )
    _, report = _doctor_json(str(folder))
    shapes = report["shapes"]
    assert shapes and all(s["status"] == "falls back" for s in shapes), shapes
    for s in shapes:
        assert s["fallback_reason"] == "tokenization_failed"
        assert "the template fails on the bridge" in s["detail"], s
        assert "no empty reasoning here" in s["detail"], s
