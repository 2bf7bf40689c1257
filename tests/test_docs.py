"""Every document the code cites is in the repository (docs/), every section of the wire
specification it cites exists, and nothing shipped points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("rust", "python", "tests", "fuzz", "scripts", "bench")
SOURCES = sorted(
    p
    for d in SOURCE_DIRS
    if (REPO / d).is_dir()
    for p in (REPO / d).rglob("*")
    if p.is_file()
    and (p.suffix in {".rs", ".py", ".pyi", ".sh", ".md"} or p.parent.name == "scripts")
    and "target" not in p.relative_to(REPO).parts
)
LABEL = r"(?:[A-ES](?:\.\d)?|D\d)"
WIRE_CITE = re.compile(
    rf"docs/wire\.md`*(?: sections?)? ({LABEL}(?:(?:, |/){LABEL})*)(?![\w.])", re.MULTILINE
)
WIRE_QUOTED = re.compile(r'docs/wire\.md`* "([^"]+)"')


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _wire_labels() -> tuple[set[str], set[str]]:
    labels, titles = set(), set()
    for line in _text(REPO / "docs" / "wire.md").splitlines():
        m = re.match(rf"#{{2,3}} ({LABEL})[. ](.*)$", line)
        if m:
            labels.add(m.group(1))
        m = re.match(r"#{2,3} (.+)$", line)
        if m:
            titles.add(m.group(1).strip())
    return labels, titles


def test_sources_were_found() -> None:
    names = {p.name for p in SOURCES}
    assert {"body.rs", "client.py", "conftest.py", "test"} <= names


def test_every_cited_docs_page_exists() -> None:
    missing = [
        f"{p.relative_to(REPO)}: docs/{page}"
        for p in SOURCES
        for page in re.findall(r"docs/([\w/.-]+?\.md)", _text(p))
        if not (REPO / "docs" / page).is_file()
    ]
    assert not missing, f"cited docs pages that do not exist: {missing}"


def test_every_cited_wire_section_exists() -> None:
    labels, titles = _wire_labels()
    assert {"A.3", "B.2", "C.2", "D3", "E.2"} <= labels, sorted(labels)
    cited: list[tuple[str, str]] = []
    for p in SOURCES:
        text = _text(p)
        for group in WIRE_CITE.findall(text):
            cited += [(str(p.relative_to(REPO)), label) for label in re.split(r", |/", group)]
        cited += [(str(p.relative_to(REPO)), t) for t in WIRE_QUOTED.findall(text)]
    assert len(cited) > 50, "the code's citations of docs/wire.md were not found"
    unknown = [(f, label) for f, label in cited if label not in labels and label not in titles]
    assert not unknown, f"docs/wire.md has no such section: {unknown}"


def test_nothing_shipped_points_outside_the_repository() -> None:
    outside = re.compile(r"\.\./shared|DESIGN\.md|STYLE\.md|baselines\.md|real-servers\.md")
    found = [
        str(p.relative_to(REPO))
        for p in SOURCES
        if p.relative_to(REPO).parts[0] != "scripts" and outside.search(_text(p))
    ]
    assert not found, f"files citing documents outside the repository: {found}"


def test_wire_citations_name_the_docs_page() -> None:
    # A bare "wire.md" would send a reader looking for a file that is not beside the code.
    bare = [
        f"{p.relative_to(REPO)}:{n}"
        for p in SOURCES
        if p.name != "test_docs.py"
        for n, line in enumerate(_text(p).splitlines(), 1)
        if re.search(r"(?<![/\w.])wire\.md", line)
    ]
    assert not bare, f"cite docs/wire.md, not wire.md: {bare}"


def test_readme_links_resolve() -> None:
    text = _text(REPO / "README.md")
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert any(link.startswith("docs/") for link in links)
    missing = [link for link in links if not (REPO / link).exists()]
    assert not missing, f"README links to missing files: {missing}"
