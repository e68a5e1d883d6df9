"""Reports (cqia/reports.py, stages/report.py): statistics, DVC metrics and plots, offline Data Docs.

Fast tests run the pure core and the stage entry on a hand-built tree; one end-to-end test
runs `dvc repro` in a temp repo (with a planted near duplicate, so merge's near-duplicate
detection is checked on the real pipeline too), then `dvc metrics show` and `dvc plots show`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from cqia.errors import CqiaError
from cqia.fileio import dumps_line, dumps_pretty, read_jsonl
from cqia.reports import CategoryStats, gate_page, index_page, percentile
from stages import report
from conftest import release_lineage
from tests.conftest import ROOT

# External style sheets, scripts, fonts or imports: anything a browser would fetch.
REMOTE = re.compile(r"""(<link[^>]+href\s*=\s*["']?(https?:)?//|<script[^>]+src\s*=|@import|url\(\s*["']?(https?:)?//)""",
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


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert [percentile(values, p) for p in (0, 1, 50, 90, 99, 100)] == [1, 1, 50, 90, 99, 100]
    assert percentile([], 50) == 0 and percentile([7], 90) == 7


GX_RESULT = {"suite": "default", "success": False, "rows": 25, "expectations": [
    {"expectation": "expect_column_values_to_be_unique", "column": "id", "success": True, "unexpected_count": 0},
    {"expectation": "expect_column_values_to_be_in_set", "column": "answer_from", "success": False,
     "unexpected_count": 2, "sample_ids": ["zhihu-<script>alert(1)</script>"], "kwargs": {"value_set": ["human", "llm"]}},
]}


def test_gate_page_reads_offline_and_names_every_expectation():
    page = gate_page("category zhihu: gate run", GX_RESULT, "Suite notes & more",
                     other_gates=[("accounting", True, "raw 31 = accepted 25 + rejected 6")])
    assert not REMOTE.search(page)
    assert "http://" not in page and "https://" not in page
    assert "<code>expect_column_values_to_be_unique</code>" in page
    assert "<code>expect_column_values_to_be_in_set</code>" in page
    assert '<span class="badge fail">FAILED</span>' in page and "1 of 2" in page
    assert "<script" not in page                                       # values are escaped
    assert "zhihu-&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{&quot;value_set&quot;:[&quot;human&quot;,&quot;llm&quot;]}" in page
    assert "Suite notes &amp; more" in page
    assert REMOTE.search('<link rel="stylesheet" href="https://cdn.example/x.css">')    # the check can fail
    index = index_page("Data Docs", [{"href": "category-zhihu.html", "name": "category@zhihu", "suite": "default",
                                      "rows": 25, "success": False}])
    assert '<a href="category-zhihu.html">category@zhihu</a>' in index and not REMOTE.search(index)


def build_tree(root: Path) -> None:
    """A built release as merge and the category stages leave it (only what the report reads)."""
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    shutil.copytree(ROOT / "expectations", root / "expectations")
    from cqia.formats import FORMAT_NAMES
    from cqia.params import load_categories, load_yaml

    names = [c.name for c in load_categories(load_yaml(root / "params.yaml"), FORMAT_NAMES)]
    categories = {}
    for i, name in enumerate(names):
        (root / "data/release" / name).mkdir(parents=True)
        (root / "data/release" / name / "train.jsonl").write_bytes(b"".join(dumps_line(r) for r in RECORDS[i:]))
        categories[name] = {"raw": 10, "released": len(RECORDS) - i, "rejected": 6 + i,
                            "rejected_by_reason": {"schema_invalid": 6 + i}}
        (root / "data/stages" / name).mkdir(parents=True)
        (root / "data/stages" / name / "metrics.json").write_bytes(dumps_pretty({
            "files": {f"data/raw/{name}/train.jsonl": {"md5": "0" * 32, "records": 10}},
            "gates": {"schema": {"rejected": 6 + i}, "great_expectations": GX_RESULT | {"success": True},
                      "accounting": {"raw": 10, "accepted": 4 - i, "rejected": 6 + i, "success": True}}}))
    (root / "data/release_metrics.json").write_bytes(dumps_pretty({
        "version": "v0.1", "released": 9, "categories": categories,
        "gates": {"great_expectations": GX_RESULT | {"suite": "release", "success": True},
                  "accounting": {"success": True}}}))


def run_report(root: Path) -> int:
    return report.main(["--params", str(root / "params.yaml"), "--stages-dir", str(root / "data/stages"),
                        "--release", str(root / "data/release"),
                        "--release-metrics", str(root / "data/release_metrics.json"),
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
                     "index.html", "release.html"]
    for name in pages:
        html = (out / "datadocs" / name).read_text(encoding="utf-8")
        assert not REMOTE.search(html), name
        if name != "index.html":
            assert "<code>expect_column_values_to_be_in_set</code>" in html, name
    assert "raw 10 = accepted 4 + rejected 6" in (out / "datadocs/category-100poison.html").read_text(encoding="utf-8")


def test_report_stage_does_not_import_great_expectations():
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
    docs = repo.file("data/reports/datadocs")
    for page in docs.iterdir():
        text = page.read_text(encoding="utf-8")
        assert not REMOTE.search(text), page.name
    assert "<code>expect_table_row_count_to_equal</code>" in (docs / "release.html").read_text(encoding="utf-8")
    assert "Data and pipelines are up to date." in repo.dvc("status").stdout
