"""The README's Python code blocks run as written (pydantic-core's habit)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "the README lost its quickstart"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(
    index: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    code = BLOCKS[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    # A trailing "# value" comment on a print line documents its output: hold it to that.
    for line in code.splitlines():
        match = re.match(r"\s*print\(.*\)\s*#\s*(.+)$", line)
        if match:
            assert match.group(1).strip() in printed, (
                f"README says {match.group(1)!r}, got {printed!r}"
            )
    assert os.getcwd() == str(REPO)
