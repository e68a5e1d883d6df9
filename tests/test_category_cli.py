"""`cqia category add`: a new source category from the command line, and its refusals."""

import json
import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from cqia.cli import cli
from cqia.common.fileio import EMPTY_JSONL
from conftest import as_registry

ROOT = Path(__file__).resolve().parent.parent
RECORD = {"instruction": "周末适合去哪里散步？", "input": "", "output": "可以去城郊的湿地公园，空气好，步道平整，适合慢慢走。",
          "task_type": {"major": ["问答"], "minor": ["生活"]}, "domain": ["生活"], "metadata": "",
          "answer_from": "human", "human_verified": False, "copyright": "作者授权"}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "expectations", tmp_path / "expectations")
    (tmp_path / "data/reviews").mkdir(parents=True)
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "train.jsonl").write_bytes(orjson.dumps(RECORD) + b"\n")
    monkeypatch.chdir(as_registry(tmp_path))
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_add_writes_the_entry_copies_raw_files_and_creates_the_review_file(workdir):
    before = (workdir / "params.yaml").read_text(encoding="utf-8")
    result = invoke("category", "add", "xhs", "--format", "cqia-jsonl", "--raw", "upstream/train.jsonl",
                    "--like", "zhihu", "--source", "Xiaohongshu")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "Added category xhs (cqia-jsonl) to params.yaml:"
    assert result.output.splitlines()[2] == "  reviews    data/reviews/xhs.jsonl (new, no decisions yet)"
    after = (workdir / "params.yaml").read_text(encoding="utf-8")
    assert after.startswith(before)  # comments and everything else kept byte for byte
    safe = YAML(typ="safe", pure=True)
    old, new = safe.load(before), safe.load(after)
    assert list(new["categories"]) == [*old["categories"], "xhs"]
    xhs, zhihu = new["categories"]["xhs"], old["categories"]["zhihu"]
    assert xhs["format"] == "cqia-jsonl" and xhs["raw"] == ["train.jsonl"] and xhs["source"] == "Xiaohongshu"
    assert {k: xhs[k] for k in ("defaults", "rules", "normalize")} == {k: zhihu[k] for k in ("defaults", "rules", "normalize")}
    assert (workdir / "data/raw/xhs/train.jsonl").read_bytes() == (workdir / "upstream/train.jsonl").read_bytes()
    assert (workdir / "data/reviews/xhs.jsonl").read_bytes() == b"\n"     # no decisions; not empty, or DVC warns


def test_add_from_a_subdirectory_writes_into_the_registry(workdir, monkeypatch):
    monkeypatch.chdir(workdir / "upstream")  # --raw is relative to the working directory
    result = invoke("category", "add", "xhs", "--format", "cqia-jsonl", "--raw", "train.jsonl", "--like", "zhihu")
    assert result.output.splitlines()[0] == "Added category xhs (cqia-jsonl) to ../params.yaml:"
    assert "xhs:" in (workdir / "params.yaml").read_text(encoding="utf-8")
    assert (workdir / "data/raw/xhs/train.jsonl").read_bytes() == (workdir / "upstream/train.jsonl").read_bytes()
    assert (workdir / "data/reviews/xhs.jsonl").read_bytes() == EMPTY_JSONL


@pytest.mark.parametrize("args, message", [
    (("zhihu", "--format", "cqia-jsonl", "--raw", "upstream/train.jsonl"),
     "error: params.yaml: categories.zhihu: category 'zhihu' already exists. Choose another name, or edit its entry"),
    (("a/b", "--format", "cqia-jsonl", "--raw", "upstream/train.jsonl"),
     "error: params.yaml: category name 'a/b' is not allowed. Use lower-case letters, digits and '_' only "
     "(it becomes a directory name; no '/' or '..')"),
    (("xhs", "--format", "csv", "--raw", "upstream/train.jsonl"),
     "error: params.yaml: categories.xhs.format: unknown format 'csv'. "
     "Available formats: ['poison-mpts', 'coig-human-value', 'cqia-jsonl']"),
    (("xhs", "--format", "cqia-jsonl", "--raw", "upstream/nope.jsonl"),
     "error: upstream/nope.jsonl: raw file not found. Name an existing file"),
    (("xhs", "--format", "cqia-jsonl"), "error: no raw file given. Name the upstream file(s): --raw path/to/train.jsonl"),
    (("xhs", "--format", "cqia-jsonl", "--raw", "upstream/train.jsonl", "--like", "douban"),
     "error: params.yaml: unknown category 'douban' for --like. Available categories: ['100poison', 'human_value', 'zhihu']"),
    (("xhs", "--format", "cqia-jsonl", "--raw", "upstream/train.jsonl", "--suite", "xhs"),
     "error: expectations/xhs.json: suite 'xhs' not found. Use --suite default, or write the suite first"),
])
def test_refusals_are_one_line_and_change_nothing(workdir, args, message):
    before = (workdir / "params.yaml").read_bytes()
    result = CliRunner().invoke(cli, ["category", "add", *args])
    assert result.exit_code == 1
    assert result.output.strip() == message
    assert (workdir / "params.yaml").read_bytes() == before
    assert not (workdir / "data/raw").exists()


@pytest.mark.e2e
def test_dvc_repro_builds_a_category_added_from_the_command_line(repo, tmp_path):
    upstream = tmp_path / "train.jsonl"
    upstream.write_bytes(orjson.dumps(RECORD) + b"\n")
    out = repo.cqia("category", "add", "xhs", "--format", "cqia-jsonl", "--raw", str(upstream), "--like", "zhihu",
                    "--json")
    assert json.loads(out.stdout)["created_reviews"] is True
    repo.dvc("repro")
    manifest = json.loads(repo.file("data/release/manifest.json").read_text())
    assert list(manifest["categories"]) == ["100poison", "human_value", "zhihu", "xhs"]
    assert manifest["categories"]["xhs"] == {"raw": 1, "released": 1, "rejected": 0, "rejected_by_reason": {}}
