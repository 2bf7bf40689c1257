"""The rules the project configures, enforced: ruff (lint and format, pyproject.toml),
rustfmt and clippy (warnings are errors). mypy --strict and stubtest run in test_packaging.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)


def ruff() -> str:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return str(exe)
    found = shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed (it is in the test extra)", pytrace=False)
    return found


def test_ruff_check() -> None:
    r = run(ruff(), "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = run(ruff(), "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cargo_fmt() -> None:
    r = run("cargo", "fmt", "--check")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_cargo_clippy() -> None:
    r = run(
        "cargo",
        "clippy",
        "--locked",
        "--all-targets",
        "--features",
        "python",
        "--",
        "-D",
        "warnings",
    )
    assert r.returncode == 0, r.stderr[-6000:]
