"""The report as a maintainer sees it: the Data Docs index in a real headless Chromium, network off.

`dvc plots show` draws with Vega from a CDN, so offline its page is blank; the report's static
SVG charts are what a maintainer looks at without a network. This opens the index the report
stage built (on the hand-built tree of tests/test_reports.py) and checks that every chart
loads as an image and that each SVG draws its marks, with every request other than file://
sent to a dead proxy (tests/chromium.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from chromium import Browser, require_chromium
from test_reports import build_tree, run_report

from cqia.publish.stats import PLOTS

pytestmark = pytest.mark.process  # a real headless Chromium

# Every image of the charts list, once decoded: its src and natural size (0 x 0 if it failed).
CHART_IMAGES = """Promise.all([...document.querySelectorAll('.charts img')].map(img => img.decode().then(
    () => [img.getAttribute('src'), img.naturalWidth, img.naturalHeight],
    () => [img.getAttribute('src'), 0, 0])))"""
# An SVG opened as a document: its bars (rect marks) and lines (line marks) that Vega drew.
MARKS = """[document.querySelectorAll('g.mark-rect path').length,
            document.querySelectorAll('g.mark-line path').length,
            document.querySelector('svg').getAttribute('class')]"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    """data/reports/ as the report stage builds it on the hand-built tree."""
    require_chromium()
    root = tmp_path_factory.mktemp("tree")
    build_tree(root)
    assert run_report(root) == 0
    return root / "data/reports"


def test_data_docs_index_shows_every_chart_offline_in_chromium(reports: Path):
    with Browser() as browser:
        index = browser.open((reports / "datadocs/index.html").as_uri())
        images = index.evaluate(CHART_IMAGES)
        heading = index.evaluate("document.querySelector('#charts').textContent")
        marks = {name: browser.open((reports / "plots" / f"{name}.svg").as_uri()).evaluate(MARKS) for name in PLOTS}
        requests = index.requests
    assert heading == "Charts"
    assert [src for src, _, _ in images] == [f"../plots/{name}.svg" for name in PLOTS]
    assert all(width > 0 and height > 0 for _, width, height in images), images
    assert requests and all(url.startswith("file://") for url in requests), requests
    # build_tree: every category rejects only schema_invalid, so 3 bar segments (one per category)
    assert marks["rejected_by_reason"] == [3, 0, "marks"]
    assert marks["task_type"][0] > 0 and marks["domain"][0] > 0
    # one line per category and one for all
    assert marks["instruction_length"][1] == marks["output_length"][1] == 4


def test_a_missing_chart_shows_as_broken_in_chromium(reports: Path, tmp_path: Path):
    """The check above can fail: an index whose SVG is gone has an image of size 0."""
    copy = shutil.copytree(reports, tmp_path / "reports")
    (copy / "plots/domain.svg").unlink()
    with Browser() as browser:
        images = {src: (w, h) for src, w, h in browser.open((copy / "datadocs/index.html").as_uri()).evaluate(CHART_IMAGES)}
    assert images.pop("../plots/domain.svg") == (0, 0)
    assert all(w > 0 for w, _ in images.values())
