"""The Markdown files keep their layout: a reflow that ran paragraphs together (it happened once
to README.md, taking three sections' headings and their shell and YAML blocks into one paragraph)
leaves code fences mid-line and in-page links pointing at headings that are gone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    ROOT / name
    for name in subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if not name.startswith(("tests/fixtures/", "bench/results/"))
)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_fences_open_their_own_lines(doc: Path) -> None:
    misplaced = [
        f"{doc.name}:{n}"
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        if "```" in line and not line.lstrip().startswith("```")
    ]
    assert misplaced == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_in_page_links_reach_a_heading(doc: Path) -> None:
    text = doc.read_text()
    in_code = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    anchors = {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", in_code, re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", in_code))
    assert sorted(links - anchors) == []
