"""The real `dvc` CLI driving the pipeline in a temporary git repository."""

import hashlib
import json
import shutil

import orjson
import pytest
from ruamel.yaml import YAML

from conftest import release_lineage

pytestmark = pytest.mark.e2e


def tree_digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".gitignore"}  # git's files, not DVC's


def edit_params(repo, change):
    yaml = YAML()
    path = repo.file("params.yaml")
    data = yaml.load(path.read_text(encoding="utf-8"))
    change(data)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.dump(data, handle)


def running(proc):
    return sorted(line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage"))


def test_repro_builds_a_gated_deterministic_release(repo):
    repo.dvc("repro")
    release = repo.file("data/release")
    manifest = json.loads((release / "manifest.json").read_text())
    metrics = json.loads(repo.file("data/release_metrics.json").read_text())
    # accounting holds per category: raw = released + rejected
    for name, cat in manifest["categories"].items():
        assert cat["raw"] == cat["released"] + cat["rejected"], name
        assert sum(cat["rejected_by_reason"].values()) == cat["rejected"]
        lines = (release / name / "train.jsonl").read_bytes().split(b"\n")[:-1]
        assert len(lines) == cat["released"]
    assert metrics["released"] == sum(c["released"] for c in manifest["categories"].values())
    # every raw record is in its category's lineage.jsonl, released or rejected with a reason
    lineage = release_lineage(release)
    assert len(lineage) == sum(c["raw"] for c in manifest["categories"].values())
    assert all(e["status"] == "released" or e["reason"] for e in lineage)
    # the manifest's hashes are the files' hashes
    digest = tree_digest(release)
    for rel, info in manifest["files"].items():
        assert digest[rel] == info["sha256"], rel
    # a second repro does nothing; dvc status is clean
    again = repo.dvc("repro")
    assert running(again) == []
    assert repo.dvc("status", "-q", check=False).returncode == 0
    # two builds from scratch give the same bytes and the same dvc.lock, the second with a helper
    # process per gate run instead of the Great Expectations server (the gate results are in the metrics)
    lock = repo.file("dvc.lock").read_bytes()
    shutil.rmtree(repo.file("data/stages"))
    shutil.rmtree(release)
    repo.env["CQIA_GX_SERVER"] = "0"
    repo.dvc("repro")
    assert tree_digest(release) == digest
    assert repo.file("dvc.lock").read_bytes() == lock


def test_a_category_added_by_a_params_entry_alone(repo):
    repo.dvc("repro")
    (repo.file("data/raw/xhs")).mkdir()
    records = [{"instruction": f"第{i}个问题：周末去哪里玩比较好？", "input": "", "output": f"推荐第{i}个去处：城郊的湿地公园，适合散步和拍照。",
                "task_type": {"major": ["问答"], "minor": ["生活"]}, "domain": ["生活"], "metadata": "",
                "answer_from": "human", "human_verified": False, "copyright": "作者授权"} for i in range(3)]
    repo.file("data/raw/xhs/train.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    repo.file("data/reviews/xhs.jsonl").write_bytes(b"")
    edit_params(repo, lambda p: p["categories"].update(xhs={"format": "cqia-jsonl", "raw": ["train.jsonl"],
                                                            "suite": "default", "source": "Xiaohongshu"}))
    proc = repo.dvc("repro")
    assert running(proc) == ["category@xhs", "dedup", "merge", "publish@xhs", "report"]  # sorted
    manifest = json.loads(repo.file("data/release/manifest.json").read_text())
    assert manifest["categories"]["xhs"]["released"] == 3
    assert "config_name: xhs" in repo.file("data/release/README.md").read_text()


def test_a_rule_change_reruns_only_its_category_dedup_and_merge(repo):
    repo.dvc("repro")
    before = {p: p.read_bytes() for p in repo.file("data/release").rglob("*") if p.is_file()}
    edit_params(repo, lambda p: p["categories"]["zhihu"]["rules"].update(min_chars={"output": 170}))  # over rule_defaults
    proc = repo.dvc("repro")
    # the other categories' dedup decisions did not change, so their part of the release is not rebuilt
    assert running(proc) == ["category@zhihu", "dedup", "merge", "publish@zhihu", "report"]  # sorted
    after = {p: p.read_bytes() for p in repo.file("data/release").rglob("*") if p.is_file()}
    changed = sorted(p.relative_to(repo.file("data/release")).as_posix() for p in after if after[p] != before.get(p))
    assert changed == ["README.md", "lineage/zhihu/index.parquet", "lineage/zhihu/lineage.jsonl", "manifest.json",
                       "zhihu/train.jsonl", "zhihu/train.parquet"]
    metrics = json.loads(repo.file("data/stages/zhihu/metrics.json").read_text())
    assert metrics["accepted"] > 0 and metrics["rejected_by_reason"]["too_short"] > 0


def test_a_failing_suite_fails_the_stage_and_nothing_downstream_runs(repo):
    suite = json.loads(repo.file("expectations/default.json").read_text())
    suite["expectations"].append({"type": "expect_column_values_to_be_between",
                                  "kwargs": {"column": "output_chars", "max_value": 50}})
    repo.file("expectations/default.json").write_text(json.dumps(suite, ensure_ascii=False))
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "Great Expectations suite 'default' failed" in err
    assert "expect_column_values_to_be_between on column 'output_chars':" in err
    assert "e.g. ids 100poison-" in err
    assert not repo.file("data/stages/100poison/accepted.jsonl.zst").exists()
    assert not list(repo.file("data/stages/100poison").glob(".*.tmp"))
    assert not repo.file("data/release").exists()
    assert "merge" not in repo.file("dvc.lock").read_text() if repo.file("dvc.lock").exists() else True


def test_the_committed_dvc_lock_is_what_a_fresh_build_produces(tmp_path):
    """A fresh clone's `make repro` must leave `git status` clean: rebuild and compare dvc.lock.

    If this fails after a change to the pipeline, run `make repro` and commit dvc.lock and the
    metrics files."""
    from tests.conftest import ROOT, make_repo

    repo = make_repo(tmp_path)
    committed = (ROOT / "dvc.lock").read_bytes()
    repo.file("dvc.lock").write_bytes(committed)
    repo.dvc("repro")
    assert repo.file("dvc.lock").read_bytes() == committed
    for metrics in ["data/release_metrics.json", *sorted(p.relative_to(ROOT).as_posix()
                                                         for p in (ROOT / "data/stages").glob("*/metrics.json"))]:
        assert repo.file(metrics).read_bytes() == (ROOT / metrics).read_bytes(), metrics
