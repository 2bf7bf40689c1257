"""The wheel: installs and imports in a fresh virtualenv, ships its stubs, and the stubs match.

`scripts/bootstrap.sh` (run by `scripts/test`) builds the wheel into target/wheels first.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def built_wheel() -> Path:
    wheels = sorted((REPO / "target" / "wheels").glob("fasttito-*.whl"))
    assert len(wheels) == 1, (
        f"expected exactly one wheel in target/wheels, found {wheels}; build it with "
        "scripts/bootstrap.sh (scripts/test does)"
    )
    return wheels[0]


def test_wheel_is_abi3_and_ships_stubs() -> None:
    wheel = built_wheel()
    assert "-cp311-abi3-" in wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    for required in (
        "fasttito/__init__.py",
        "fasttito/_core.pyi",
        "fasttito/py.typed",
        "fasttito/errors.py",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    assert any(n.startswith("fasttito/_core") and n.endswith(".so") for n in names)


def test_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
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
            built_wheel(),
        ],
        check=True,
    )
    code = (
        "import fasttito, fasttito._core as c\n"
        f"t = fasttito.Tokenizer.from_dir({str(REPO / 'models' / 'qwen2.5')!r})\n"
        "assert t.encode('Hello world') == [9707, 1879]\n"
        "assert issubclass(fasttito.TemplateError, fasttito.FasttitoError)\n"
        "print(c.build_profile)\n"
    )
    out = subprocess.run(
        [python, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.stdout.strip() in ("release", "debug")


def test_stubs_match_the_compiled_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "fasttito._core"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_is_mypy_strict_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(REPO / "python" / "fasttito")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
