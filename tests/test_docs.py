"""The README and docs/ are the user's door: every link and anchor resolves, and the README's
annotated tree names every package of cqia/ and nothing that is not there."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lstrip("#").strip().lower())
    return text.replace(" ", "-")


def test_every_relative_link_and_anchor_resolves():
    anchors = {p: {anchor(line) for line in p.read_text(encoding="utf-8").splitlines() if line.startswith("#")}
               for p in DOCS}
    broken = []
    for page in DOCS:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, fragment = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{page.name}: {link} (no such file)")
            elif fragment and target in anchors and fragment not in anchors[target]:
                broken.append(f"{page.name}: {link} (no such heading)")
    assert not broken


def test_the_readme_tree_names_every_package_of_cqia():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tree = readme[readme.index("## What is where"):readme.index("## The pipeline")]
    listed = set(re.findall(r"^  ([a-z_]+)/", tree, re.M))
    packages = {p.parent.name for p in (ROOT / "cqia").glob("*/__init__.py")}
    assert listed == packages


def test_the_readme_stays_a_door():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 320


def test_every_row_of_the_faults_table_names_a_test_that_exists():
    text = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    rows = [line for line in text[text.index("## Faults"):].splitlines() if line.startswith("| ") and "---" not in line]
    missing = []
    for row in rows[1:]:                                   # rows[0]: the header
        tests, last = [], None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", row.rsplit(" | ", 1)[-1]):
            last = path or last
            if last:
                tests.append((last, name))
        if not tests:
            missing.append(f"no test: {row[:60]}")
        for path, name in tests:
            source = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).is_file() else ""
            if not source or (name and f"def {name}(" not in source):
                missing.append(f"{path}::{name}")
    assert len(rows) > 5 and not missing
