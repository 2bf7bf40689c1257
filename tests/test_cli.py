"""The `fasttito` command line, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fasttito", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_demo_renders_and_tokenizes_the_vendored_model() -> None:
    result = run("demo", "--model", "models/qwen2.5")
    assert result.returncode == 0, result.stderr
    assert "<tool_call>" in result.stdout and "<|im_start|>assistant" in result.stdout
    assert "decode(ids) == rendered text: ok" in result.stdout


def test_demo_reports_a_broken_model_folder(tmp_path: Path) -> None:
    result = run("demo", "--model", str(tmp_path))
    assert result.returncode == 2
    assert "TokenizerLoadError" in result.stderr and "no tokenizer.json" in result.stderr
