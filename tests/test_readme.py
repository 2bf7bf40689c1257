"""The Python code blocks of the README and of the docs pages run as written (pydantic-core's
habit)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BLOCKS = [
    (page.relative_to(REPO).as_posix(), i, code)
    for page in PAGES
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]


def test_readme_has_python_examples() -> None:
    assert any(page == "README.md" for page, _, _ in BLOCKS), "the README lost its quickstart"


@pytest.mark.parametrize(("page", "index", "code"), BLOCKS, ids=[f"{p}-{i}" for p, i, _ in BLOCKS])
def test_readme_block_runs(
    page: str,
    index: int,
    code: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(REPO)
    exec(compile(code, f"{page} python block {index}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    # A trailing "# value" comment on a print line documents its output: hold it to that.
    for line in code.splitlines():
        match = re.match(r"\s*print\(.*\)\s*#\s*(.+)$", line)
        if match:
            assert match.group(1).strip() in printed, (
                f"{page} says {match.group(1)!r}, got {printed!r}"
            )
    assert os.getcwd() == str(REPO)
