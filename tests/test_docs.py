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
               | set(re.findall(r'<a id="([\w-]+)"></a>', p.read_text(encoding="utf-8")))   # a table row's anchor
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


def fault_rows(text: str, heading: str) -> list[str]:
    """The rows of the first table after `heading`, without its header."""
    rows = []
    for line in text[text.index(heading):].splitlines()[1:]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    return [row for row in rows[1:] if "---" not in row]


def missing_tests(rows: list[str]) -> list[str]:
    """The rows whose last column names no test, and the tests they name that do not exist
    (`tests/x.py::name`; `::name` is another test of the file named before it)."""
    missing = []
    for row in rows:
        tests, last = [], None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", row.rstrip(" |").rsplit(" | ", 1)[-1]):
            last = path or last
            if last:
                tests.append((last, name))
        if not tests:
            missing.append(f"no test: {row[:60]}")
        for path, name in tests:
            source = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).is_file() else ""
            if not source or (name and f"def {name}(" not in source):
                missing.append(f"{path}::{name}")
    return missing


def test_every_row_of_the_faults_table_names_a_test_that_exists():
    rows = fault_rows((ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8"), "## Faults")
    assert len(rows) > 5 and not missing_tests(rows)


def test_every_fault_in_the_readme_names_a_test_that_exists_and_links_its_detail_row():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = fault_rows(readme, "## When something goes wrong")
    faults = ["disk full", "a damaged DVC object", "two builds at once", "a killed stage", "S3 cut", "S3 stalled",
              "`cqia release` stopped"]
    assert [re.match(r"\| \[(.+?)\]\(docs/troubleshooting\.md#fault-[\w-]+\)", row).group(1) for row in rows] == faults
    assert not missing_tests(rows)
    # each README row's tests back the Faults table's rows too, so the two tables cannot drift apart
    detail = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert [name for name in re.findall(r"::(\w+)`", "\n".join(rows)) if name not in detail] == []
