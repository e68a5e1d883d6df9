"""Reports (cqia/publish/stats.py, cqia/report/datadocs.py, stages/report.py): statistics, DVC metrics and plots,
GX Data Docs that read offline.

Fast tests run the pure core, GX's renderer (real, no network) and the stage entry on a hand-built
tree; one end-to-end test runs `dvc repro` in a temp repo (with a planted near duplicate, so merge's
near-duplicate detection is checked on the real pipeline too), then `dvc metrics show` and
`dvc plots show`, and reads the Data Docs it built.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import release_lineage
from cqia.common.errors import CqiaError
from cqia.common.fileio import dumps_line, dumps_pretty
from cqia.publish.stats import CHART_LABELS, OTHER, PLOTS, CategoryStats, histogram_percentile
from cqia.report.charts import chart_spec, chart_svg
from cqia.report.datadocs import RUN_TIME, gate_page, index_page, offline
from stages import report
from tests.conftest import ROOT

# A reference to another host (http://, https:// or //) in src, href, url() or @import: what GX's
# own pages carry for Bootstrap, jQuery, Font Awesome and its logo.
REMOTE = re.compile(r"""(\b(src|srcset|href)\s*=\s*["']?\s*|url\(\s*["']?\s*|@import\s+(url\()?\s*["']?\s*)(https?:)?//""",
                    re.IGNORECASE)


def record(instruction: str, output: str, major=("问答",), domain=("生活",), verified=False) -> dict:
    return {"id": "x", "instruction": instruction, "input": "", "output": output,
            "task_type": {"major": list(major), "minor": []}, "domain": list(domain), "metadata": "",
            "answer_from": "human", "human_verified": verified, "copyright": ""}


RECORDS = [
    record("红烧肉怎么做？", "先焯水，再小火慢炖一个小时。", verified=True),          # simplified
    record("紅燒肉怎麼做？", "先焯水，再小火慢燉一個小時。", domain=("生活", "美食")),  # traditional
    record("ＡＩ是什么？", "ＡＩ即人工智能。", major=("百科",), domain=("科技",)),      # full-width
    record("用Python写hello world", "print('hello world')", major=("代码",), domain=("科技",)),  # mixed script
]


def test_category_statistics_count_characters_and_labels():
    stats = CategoryStats("zhihu").add_all(RECORDS)
    m = stats.metrics({"too_short": 2, "duplicate_of": 1})
    assert (m["released"], m["rejected"], m["human_verified"]) == (4, 3, 1)
    assert m["rejected_by_reason"] == {"duplicate_of": 1, "too_short": 2}
    # characters, not bytes: "红烧肉怎么做？" is 7 characters (21 bytes in UTF-8), "ＡＩ是什么？" 6
    assert m["instruction_chars"] == {"min": 6, "p50": 7, "p90": 19, "p99": 19, "max": 19, "mean": 9.8}
    assert m["output_chars"]["min"] == 8 and m["output_chars"]["max"] == 20
    assert m["task_type"] == {"问答": 2, "代码": 1, "百科": 1}
    assert m["domain"] == {"生活": 2, "科技": 2, "美食": 1}
    rows = stats.plot_rows({"too_short": 2, "duplicate_of": 1})
    assert rows["rejected_by_reason"] == [{"reason": "duplicate_of", "records": 1}, {"reason": "too_short", "records": 2}]
    assert rows["domain"][0] == {"domain": "生活", "records": 2}
    assert rows["output_length"][0] == {"percentile": 0, "chars": 8}
    assert rows["output_length"][-1] == {"percentile": 100, "chars": 20}


def test_breakdowns_keep_the_top_labels_and_sum_the_rest():
    stats = CategoryStats("c").add_all(record("问题", "回答", domain=(f"领域{i:02d}",)) for i in range(12))
    domains = stats.metrics({})["domain"]
    assert list(domains) == [f"领域{i:02d}" for i in range(10)] + ["(other)"]
    assert domains["(other)"] == 2


def nearest_rank(sorted_values: list[int], p: float) -> int:
    """The textbook nearest-rank percentile of a sorted list, the oracle for the histogram's."""
    if not sorted_values:
        return 0
    return sorted_values[min(max(1, math.ceil(p / 100 * len(sorted_values))), len(sorted_values)) - 1]


def hist(values: list[int]) -> list[tuple[int, int]]:
    return sorted(Counter(values).items())


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert [histogram_percentile(hist(values), p) for p in (0, 1, 50, 90, 99, 100)] == [1, 1, 50, 90, 99, 100]
    assert histogram_percentile([], 50) == 0 and histogram_percentile([(7, 1)], 90) == 7


@given(st.lists(st.integers(0, 50), max_size=60), st.integers(0, 100))
def test_histogram_percentile_is_the_percentile_of_the_values(values, p):
    assert histogram_percentile(hist(values), p) == nearest_rank(sorted(values), p)


def test_statistics_survive_a_summary_round_trip_and_merge_like_records():
    """publish stores `as_dict()` in its summary; the report merges `from_dict()`s: the same
    metrics and plots as statistics over all the records at once."""
    parts = [CategoryStats("a").add_all(RECORDS[:1]), CategoryStats("b").add_all(RECORDS[1:])]
    loaded = [CategoryStats.from_dict(s.name, orjson.loads(orjson.dumps(s.as_dict()))) for s in parts]
    together = CategoryStats("all").add_all(RECORDS)
    merged = loaded[0].merged(loaded[1:], "all")
    assert merged.metrics({"x": 1}) == together.metrics({"x": 1})
    assert merged.plot_rows({}) == together.plot_rows({})


GX_RESULT = {"suite": "default", "success": False, "rows": 25, "expectations": [
    {"expectation": "expect_column_values_to_be_unique", "column": "id", "success": True, "unexpected_count": 0},
    {"expectation": "expect_column_values_to_be_in_set", "column": "answer_from", "success": False,
     "unexpected_count": 2, "sample_ids": ["zhihu-<script>alert(1)</script>"], "kwargs": {"value_set": ["human", "llm"]}},
    {"expectation": "expect_table_row_count_to_equal", "column": None, "success": True, "unexpected_count": 0,
     "kwargs": {"value": 25}},
]}


def zhihu_page(gx=GX_RESULT) -> str:
    return gate_page(gx, "category@zhihu", "zhihu (accepted records)", notes="Suite notes & more",
                     suite_href="../../../expectations/default.json",
                     other_gates=[("accounting", True, "raw 31 = accepted 25 + rejected 6")],
                     context=[("stage", "category@zhihu")])


def section(page: str, name: str) -> str:
    """The HTML of one of the page's sections (GX: a div.ge-section whose header names it)."""
    parts = re.split(r'(?=<div id="section-\d+" class="ge-section)', page)
    found = [p for p in parts if re.search(rf"<h5[^>]*>\s*{re.escape(name)}\s*</h5>", p)]
    assert len(found) == 1, name
    return found[0]


def test_gate_page_is_great_expectations_data_docs():
    page = zhihu_page()
    # GX's validation page: its sidebar, Overview, Statistics and Info, one section per column.
    assert "<h4>Expectation Validation Result</h4>" in page
    assert "Validations / default / zhihu (accepted records) / category@zhihu / 1970-01-01T00:00:00Z" in page
    assert re.search(r"Evaluated Expectations</div></td><td[^>]*><div[^>]*>3<", page)
    assert re.search(r"Unsuccessful Expectations</div></td><td[^>]*><div[^>]*>1<", page)
    assert re.search(r"Run Name</div></td><td[^>]*><div[^>]*>category@zhihu<", page)
    assert '<a href="../../../expectations/default.json">default</a>' in page           # the suite, as a file
    # Each expectation in GX's words, with the failing count GX computes from the result.
    assert 'values must be unique.' in section(page, "id")
    assert 'Must have exactly <span class="badge badge-secondary" >25</span> rows.' in page
    answer_from = section(page, "answer_from")
    assert ('values must belong to this set: <span class="badge badge-secondary" >human</span> '
            '<span class="badge badge-secondary" >llm</span>.') in answer_from
    assert "2 unexpected values found. 8% of 25 total rows." in answer_from
    # Our section, in GX's components: the other gates, the inputs, failing rows, notes; all escaped.
    gate_run = section(page, "Gate run")
    assert "raw 31 = accepted 25 + rejected 6" in gate_run
    assert "2 of 3 expectations passed" in gate_run
    assert "zhihu-&lt;script&gt;alert(1)&lt;/script&gt;" in gate_run and "Suite notes &amp; more" in gate_run


def test_a_failing_expectation_shows_as_failed():
    page = zhihu_page()
    failed, passed = '<i class="fas fa-times text-danger"', '<i class="fas fa-check-circle text-success"'
    assert failed in section(page, "answer_from") and passed not in section(page, "answer_from")
    assert passed in section(page, "id") and failed not in section(page, "id")
    assert re.search(r'Status:</span> <i class="fas fa-times text-danger"[^>]*></i> Failed', page)
    # GX marks passing rows for its "Failed Only" filter; the failing one is not marked.
    assert "hide-succeeded-validation-target-child" not in section(page, "answer_from")
    passing = zhihu_page(GX_RESULT | {"success": True, "expectations": GX_RESULT["expectations"][:1]})
    assert re.search(r'Status:</span> <i class="fas fa-check-circle text-success"[^>]*></i> Succeeded', passing)


def test_gate_page_fetches_nothing_and_runs_no_script():
    page = zhihu_page()
    assert not REMOTE.search(page)
    assert "http://" not in page and "https://" not in page
    for tag in ("<script", "<link", "<img", "onclick=", "@import", "url("):
        assert tag not in page, tag
    assert page.count("<style>") == 1                                   # ours, not GX's
    # the check itself catches what GX's template carries
    for remote in ('<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>',
                   '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>',
                   '<img class="NO-CACHE" src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png"',
                   "background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png')",
                   '@import "//fonts.example/x.css";'):
        assert REMOTE.search(remote), remote


def test_gate_page_is_the_same_bytes_every_time_and_reads_no_clock():
    first = zhihu_page()
    assert zhihu_page() == first
    now = datetime.now(timezone.utc)
    for stamp in (now.strftime("%Y%m%dT"), now.strftime("%Y-%m-%dT"), str(now.year)):
        assert stamp not in first, stamp                                # no run time, no ?d= on a logo URL
    assert RUN_TIME in first
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", first)   # no uuid4 ids


def test_offline_removes_what_gx_fetches_and_stops_on_anything_new():
    page = ('<html><head><title>x</title><link rel="stylesheet" href="https://cdn.example/b.css"/>'
            '<script src="https://cdn.example/j.js"></script><style>a{background:url("https://x/y.png")}</style>'
            '</head><body><a href="../../../../index.html"><img src="https://s3.example/logo.png" alt="GX"/></a>'
            '<label onclick="f()">x</label><footer><a href="https://example.com/news">Subscribe</a></footer></body></html>')
    out = offline(page, "Validations / t")
    assert not REMOTE.search(out) and "<title>Validations / t</title>" in out
    assert '<a href="index.html"><span>GX</span></a>' in out and "onclick" not in out
    with pytest.raises(CqiaError) as err:
        offline("<html><head></head><body><video src='https://cdn.example/v.mp4'></video></body></html>", "t")
    assert str(err.value) == ("cqia/report/datadocs.py: the Data Docs page 't' still fetches something: "
                              "<video src='https://cdn.example/v.mp4'>. great_expectations' page template has "
                              "changed; extend `offline` to remove it")


def test_index_page_links_every_gate_run():
    index = index_page("Gate runs of release v0.1", [
        {"href": "category-zhihu.html", "name": "category@zhihu", "suite": "default", "rows": 25, "success": False,
         "evaluated": 3, "unsuccessful": 1}])
    assert '<a href="category-zhihu.html">category@zhihu</a>' in index
    assert '<i class="fas fa-times text-danger" aria-hidden="true"></i> failed' in index
    assert "<td>25</td><td>3</td><td>1</td>" in index
    assert not REMOTE.search(index) and "<script" not in index


def test_index_page_shows_the_charts_as_images_of_the_report():
    index = index_page("t", [], [{"href": "../plots/domain.svg", "title": "Released records by domain"}])
    assert ('<li><a href="../plots/domain.svg"><img src="../plots/domain.svg" alt="Released records by domain">'
            '</a></li>') in index
    assert '<h2 id="charts">Charts</h2>' in index and not REMOTE.search(index)
    assert "Charts" not in index_page("t", [])


def bar_rows(counts: dict[str, int]) -> list[dict]:
    return [{"domain": label, "records": n} for label, n in counts.items()]


def test_bar_chart_stacks_the_categories_most_first_and_sums_the_rest():
    many = {f"领域{i:02d}": 1 for i in range(CHART_LABELS + 3)}
    spec = chart_spec("domain", {"zhihu": bar_rows({"生活": 2, **many}), "100poison": bar_rows({"生活": 1, "科技": 3}),
                                 "all": bar_rows({"ignored": 99})})
    labels = spec["encoding"]["y"]["sort"]
    # most records first, ties by label; "all" is the categories' sum, so it is not drawn again
    assert labels[:3] == ["生活", "科技", "领域00"] and labels[-1] == OTHER and len(labels) == CHART_LABELS + 1
    values = spec["data"]["values"]
    assert {"category": "100poison", "domain": "生活", "records": 1} in values
    assert {"category": "zhihu", "domain": OTHER, "records": 5} in values     # 23 - 18 shown
    assert sum(v["records"] for v in values) == 2 + len(many) + 1 + 3
    assert {v["category"] for v in values} == {"zhihu", "100poison"}
    assert spec["encoding"]["color"]["scale"]["domain"] == ["zhihu", "100poison"]
    assert spec["title"] == PLOTS["domain"].title


def test_line_chart_has_a_line_per_category_and_all():
    rows = {c: [{"percentile": 0, "chars": 1}, {"percentile": 100, "chars": n}] for c, n in (("a", 5), ("all", 9))}
    spec = chart_spec("output_length", rows)
    assert spec["encoding"]["color"]["scale"]["domain"] == ["a", "all"]
    assert {"category": "all", "percentile": 100, "chars": 9} in spec["data"]["values"]


def test_chart_svg_is_drawn_offline_the_same_every_time():
    spec = chart_spec("rejected_by_reason", {"zhihu": [{"reason": "schema_invalid", "records": 8}]})
    svg = chart_svg(spec)
    assert svg.startswith("<svg") and svg == chart_svg(spec)
    assert "schema_invalid" in svg and "Rejected records by reason code" in svg and not REMOTE.search(svg)
    with pytest.raises(ValueError, match="allowed"):                     # data is never fetched
        chart_svg({**spec, "data": {"url": "https://example.com/data.csv"}})


def test_dvc_yaml_declares_every_plot_and_its_chart():
    from ruamel.yaml import YAML

    declared = {}
    for entry in YAML(typ="safe").load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["report"]["plots"]:
        declared.update(entry)
    for name, plot in PLOTS.items():
        assert declared.pop(f"data/reports/plots/{name}") == {"cache": False, "x": plot.x, "y": plot.y,
                                                              "template": plot.template}
        assert declared.pop(f"data/reports/plots/{name}.svg") == {"cache": False}
    assert not declared


def build_tree(root: Path) -> None:
    """A built release as merge and the category stages leave it (only what the report reads)."""
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    shutil.copytree(ROOT / "expectations", root / "expectations")
    from cqia.common.params import load_categories, load_yaml

    names = [c.name for c in load_categories(load_yaml(root / "params.yaml"))]
    categories = {}
    for i, name in enumerate(names):
        categories[name] = {"raw": 10, "released": len(RECORDS) - i, "rejected": 6 + i,
                            "rejected_by_reason": {"schema_invalid": 6 + i}}
        (root / "data/stages" / name).mkdir(parents=True)
        (root / "data/stages" / name / "metrics.json").write_bytes(dumps_pretty({
            "files": {f"data/raw/{name}/train.jsonl": {"md5": "0" * 32, "records": 10}},
            "gates": {"schema": {"rejected": 6 + i}, "great_expectations": GX_RESULT | {"success": True},
                      "accounting": {"raw": 10, "accepted": 4 - i, "rejected": 6 + i, "success": True}}}))
        (root / "data/publish").mkdir(parents=True, exist_ok=True)
        (root / "data/publish" / f"{name}.json").write_bytes(dumps_pretty({
            "raw": 10, "statistics": CategoryStats(name).add_all(RECORDS[i:]).as_dict(),
            "gates": {"schema": {"released_checked": 4 - i, "success": True},
                                 "accounting": {"accepted": 4 - i, "released": 4 - i, "duplicates": 0, "success": True},
                                 "great_expectations": GX_RESULT | {"suite": "publish", "success": True}}}))
    (root / "data/dedup_metrics.json").write_bytes(dumps_pretty({
        "accepted": 9, "duplicates": 1, "near_duplicates": 0,
        "gates": {"schema": {"decisions": 1, "success": True},
                  "great_expectations": GX_RESULT | {"suite": "dedup", "success": True}}}))
    (root / "data/release_metrics.json").write_bytes(dumps_pretty({
        "version": "v0.1", "released": 9, "categories": categories,
        "gates": {"great_expectations": GX_RESULT | {"suite": "release", "success": True},
                  "accounting": {"success": True}}}))


def run_report(root: Path) -> int:
    return report.main(["--params", str(root / "params.yaml"), "--stages-dir", str(root / "data/stages"),
                        "--release-metrics", str(root / "data/release_metrics.json"),
                        "--dedup-metrics", str(root / "data/dedup_metrics.json"),
                        "--publish-dir", str(root / "data/publish"),
                        "--schema", str(root / "schemas/record.schema.json"), "--suites", str(root / "expectations"),
                        "--metrics", str(root / "data/reports/metrics.json"),
                        "--plots", str(root / "data/reports/plots"),
                        "--datadocs", str(root / "data/reports/datadocs")])


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_report_stage_writes_metrics_plots_and_data_docs_deterministically(tmp_path: Path):
    build_tree(tmp_path)
    assert run_report(tmp_path) == 0
    out = tmp_path / "data/reports"
    first = tree_bytes(out)
    assert run_report(tmp_path) == 0
    assert tree_bytes(out) == first                                    # byte for byte, no timestamps
    metrics = orjson.loads((out / "metrics.json").read_bytes())
    assert metrics["categories"]["100poison"]["released"] == 4
    assert metrics["all"]["released"] == 4 + 3 + 2
    assert metrics["all"]["rejected_by_reason"] == {"schema_invalid": 6 + 7 + 8}
    assert (out / "plots/rejected_by_reason/zhihu.csv").read_text(encoding="utf-8") == "reason,records\nschema_invalid,8\n"
    assert (out / "plots/task_type/all.csv").read_text(encoding="utf-8").splitlines() == [
        "task_type,records", "代码,3", "百科,3", "问答,3"]                    # most first, ties by label
    pages = sorted(p.name for p in (out / "datadocs").iterdir())
    assert pages == ["category-100poison.html", "category-human_value.html", "category-zhihu.html",
                     "dedup.html", "index.html", "publish-100poison.html", "publish-human_value.html",
                     "publish-zhihu.html", "release.html"]
    for name in pages:
        html = (out / "datadocs" / name).read_text(encoding="utf-8")
        assert not REMOTE.search(html), name
        if name != "index.html":
            assert "values must belong to this set" in html, name                 # GX's rendering
            assert '<a href="index.html">Home</a>' in html, name
    poison = (out / "datadocs/category-100poison.html").read_text(encoding="utf-8")
    assert "raw 10 = accepted 4 + rejected 6" in poison
    assert "Validations / default / 100poison (accepted records) / category@100poison / " in poison
    assert '<a href="../../../expectations/default.json">default</a>' in poison
    release = (out / "datadocs/release.html").read_text(encoding="utf-8")
    assert '<a href="../../../expectations/release.json">release</a>' in release
    publish = (out / "datadocs/publish-zhihu.html").read_text(encoding="utf-8")
    assert "accepted 2 = released 2 + duplicates 0" in publish
    assert '<a href="../../../expectations/publish.json">publish</a>' in publish
    assert "1 decisions checked against dedup.schema.json" in (out / "datadocs/dedup.html").read_text(encoding="utf-8")
    index = (out / "datadocs/index.html").read_text(encoding="utf-8")
    assert '<a href="release.html">merge</a>' in index and '<a href="category-zhihu.html">category@zhihu</a>' in index
    charts = sorted(p.name for p in (out / "plots").glob("*.svg"))
    assert charts == sorted(f"{name}.svg" for name in PLOTS)
    for name in PLOTS:
        assert f'<img src="../plots/{name}.svg" alt="{PLOTS[name].title}">' in index
    assert "schema_invalid" in (out / "plots/rejected_by_reason.svg").read_text(encoding="utf-8")


@pytest.mark.process
def test_importing_the_report_stage_does_not_import_great_expectations():
    code = "import sys, stages.report; print(sorted(m for m in sys.modules if m.startswith('great_expectations')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_report_stage_needs_a_built_release(tmp_path: Path):
    build_tree(tmp_path)
    (tmp_path / "data/release_metrics.json").unlink()
    with pytest.raises(CqiaError) as err:
        run_report(tmp_path)
    assert str(err.value) == f"{tmp_path}/data/release_metrics.json: not found. Run `dvc repro merge` first"


ZHIHU_EXTRA = [
    {"instruction": "周末在家怎样安排时间才不会觉得虚度？", "input": "",
     "output": "可以先列一个简单的清单，把想做的事情分成休息、学习和家务三类，每类只挑一两件。上午精力好，适合读书或者学点新东西；"
               "下午做些家务、整理房间；晚上留给家人和朋友。重要的是不要把日程排得太满，给自己留出发呆和散步的时间。",
     "task_type": {"major": ["问答"], "minor": ["生活"]}, "domain": ["生活"], "metadata": "",
     "answer_from": "human", "human_verified": False, "copyright": "作者授权，仅供研究使用"},
]


def plant_near_duplicates(repo) -> None:
    """Append a record, its near duplicate (one punctuation mark changed) and the same question
    with a different answer to the zhihu raw file of the temp repo."""
    original = ZHIHU_EXTRA[0]
    near = dict(original, instruction=original["instruction"].replace("？", "?"))
    other = dict(original, output="我一般会睡个懒觉，然后去公园跑步，下午看一部电影，晚上给父母打个电话，聊聊这一周发生的事情。"
                                   "这样过下来既放松又踏实，周一上班也更有精神。")
    path = repo.file("data/raw/zhihu/train.jsonl")
    data = path.read_bytes()
    path.write_bytes(data + (b"" if data.endswith(b"\n") else b"\n") + b"".join(dumps_line(r) for r in (original, near, other)))


@pytest.mark.e2e
def test_dvc_metrics_and_plots_render_the_report_and_near_duplicates_are_traced(repo, tmp_path: Path):
    plant_near_duplicates(repo)
    repo.dvc("repro", "-q")
    # Near duplicates, traced: which record was kept, and why.
    lineage = [e for e in release_lineage(repo.file("data/release"))
               if e["raw"].get("instruction", "").startswith("周末在家")]
    kept, near, other = sorted(lineage, key=lambda e: e["source"]["line"])
    assert (kept["status"], other["status"]) == ("released", "released")
    assert near["reason"] == f"near_duplicate_of:{kept['id']}"
    step = near["steps"][-1]
    assert (step["near_duplicate_of"], step["kept_because"]) == (kept["id"], "first in release order")
    assert step["similarity"] >= 0.8 and step["output_similarity"] == 1.0
    assert kept["steps"][-1] == {"step": "dedup", "result": "pass", "near_duplicates": [near["id"]],
                                 "kept_because": "first in release order"}
    metrics = orjson.loads(repo.file("data/release_metrics.json").read_bytes())
    assert metrics["categories"]["zhihu"]["rejected_by_reason"]["near_duplicate_of"] == 1
    assert metrics["neardup"]["near_duplicates"] == 1

    shown = repo.dvc("metrics", "show", "data/reports/metrics.json").stdout
    assert "categories.zhihu.rejected_by_reason.near_duplicate_of" in shown
    assert "all.output_chars.p50" in shown
    out = tmp_path / "plots"
    repo.dvc("plots", "show", "-o", str(out))
    html = (out / "index.html").read_text(encoding="utf-8")
    for kind in ("rejected_by_reason", "task_type", "domain", "instruction_length", "output_length"):
        for cat in ("100poison", "human_value", "zhihu", "all"):
            assert f"data/reports/plots/{kind}/{cat}.csv" in html, (kind, cat)
    assert '"reason": "near_duplicate_of"' in html
    for kind in ("rejected_by_reason", "task_type", "domain", "instruction_length", "output_length"):
        # the static charts: images DVC copies beside its page, which show offline
        assert f'<img src="static/workspace_data_reports_plots_{kind}.svg">' in html, kind
        assert (out / "static" / f"workspace_data_reports_plots_{kind}.svg").read_bytes() == \
            repo.file(f"data/reports/plots/{kind}.svg").read_bytes()
    assert "near_duplicate_of" in repo.file("data/reports/plots/rejected_by_reason.svg").read_text(encoding="utf-8")
    docs = repo.file("data/reports/datadocs")
    for page in docs.iterdir():
        text = page.read_text(encoding="utf-8")
        assert not REMOTE.search(text), page.name
    release = (docs / "release.html").read_text(encoding="utf-8")
    released = metrics["released"]
    assert f'Must have exactly <span class="badge badge-secondary" >{released}</span> rows.' in release
    assert "Data and pipelines are up to date." in repo.dvc("status").stdout
