"""`cqia category add`: a new source category from the command line, and its refusals."""

import json
import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from conftest import as_registry
from cqia.cli import cli
from cqia.common.fileio import EMPTY_JSONL

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


def test_add_without_like_takes_the_first_categorys_rules_and_says_so(workdir):
    result = invoke("category", "add", "xhs", "--format", "cqia-jsonl", "--raw", "upstream/train.jsonl")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[3] == ("  settings   rules and normalize of 100poison, the first category "
                                             "(--like NAME copies another's; edit them in params.yaml)")
    new = YAML(typ="safe", pure=True).load((workdir / "params.yaml").read_text(encoding="utf-8"))["categories"]
    assert {k: new["xhs"].get(k) for k in ("rules", "normalize", "defaults", "review")} == \
        {"rules": new["100poison"]["rules"], "normalize": new["100poison"]["normalize"], "defaults": None, "review": None}


def test_a_category_without_rules_is_said_to_have_none(workdir):
    (workdir / "params.yaml").write_text("categories:\n  plain:\n    format: cqia-jsonl\n    raw: [train.jsonl]\n")
    result = invoke("category", "add", "xhs", "--format", "cqia-jsonl", "--raw", "upstream/train.jsonl")
    assert result.output.splitlines()[3:] == [
        "  settings   none of plain, the first category (--like NAME copies another's; edit them in params.yaml)",
        "  rules      none: only the schema and the suite judge its records (add `rules:` under categories.xhs "
        "in params.yaml)",
        "Next: dvc repro   (runs category@xhs, dedup, publish@xhs, merge and report)"]


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


# --------------------------------------------------------------------------- remove

from cqia.cli.category import add_entry_text, remove_entry_text  # noqa: E402

PARAMS_TEXT = (ROOT / "params.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(YAML(typ="safe").load(PARAMS_TEXT)["categories"]))
def test_remove_entry_text_deletes_the_entrys_lines_only(name):
    after = remove_entry_text(PARAMS_TEXT, name)
    safe = YAML(typ="safe", pure=True)
    old, new = safe.load(PARAMS_TEXT), safe.load(after)
    del old["categories"][name]
    assert new == old
    lines, kept = PARAMS_TEXT.splitlines(), after.splitlines()
    it = iter(lines)
    assert all(line in it for line in kept)  # only lines taken away, the rest in order and byte for byte
    assert not any(line.startswith(f"  {name}:") for line in kept)
    assert "\n\n\n" not in after


@pytest.mark.parametrize("entry", [{"format": "cqia-jsonl", "raw": ["train.jsonl"]},
                                   {"format": "cqia-jsonl", "raw": ["a.jsonl", "b.jsonl"], "source": "# not a comment",
                                    "rules": {"min_chars": {"output": 3}, "pii": {"email": "mask"}}}])
def test_removing_what_add_added_gives_the_text_back(entry):
    assert remove_entry_text(add_entry_text(PARAMS_TEXT, "xhs", entry), "xhs") == PARAMS_TEXT


def built_outputs(workdir: Path, name: str) -> dict:
    """A category's outputs as its stages write them, and dvc.lock's entries for them."""
    files = [f"data/stages/{name}/accepted.jsonl.zst", f"data/stages/{name}/metrics.json",
             f"data/publish/{name}.json", f"data/release/{name}/train.jsonl",
             f"data/release/lineage/{name}/lineage.jsonl", f"data/dedup/{name}.jsonl"]
    for rel in files:
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).write_text("{}\n")
    for directory, line in [(f"data/stages/{name}", "/accepted.jsonl.zst"), ("data/publish", f"/{name}.json"),
                            ("data/release", f"/{name}"), ("data/release/lineage", f"/{name}")]:
        with open(workdir / directory / ".gitignore", "a") as handle:
            handle.write(line + "\n")
    return {
        f"category@{name}": {"cmd": "python -m stages.category", "deps": [{"path": f"data/raw/{name}"}],
                             "outs": [{"path": f"data/stages/{name}/accepted.jsonl.zst", "md5": "a"},
                                      {"path": f"data/stages/{name}/metrics.json", "md5": "b"}]},
        f"publish@{name}": {"cmd": "python -m stages.publish",
                            "deps": [{"path": f"data/stages/{name}/accepted.jsonl.zst"},
                                     {"path": f"data/dedup/{name}.jsonl"}, {"path": "cqia/release.py"},
                                     {"path": f"expectations/{name}.json"}],
                            "outs": [{"path": f"data/publish/{name}.json", "md5": "c"},
                                     {"path": f"data/release/{name}", "md5": "d.dir"},
                                     {"path": f"data/release/lineage/{name}", "md5": "e.dir"}]},
    }


@pytest.mark.process
def test_remove_takes_the_entry_raw_files_reviews_and_outputs_and_nothing_else(workdir):
    assert invoke("category", "add", "xhs", "--format", "cqia-jsonl", "--raw", "upstream/train.jsonl",
                  "--like", "zhihu").exit_code == 0
    (workdir / "data/raw/zhihu").mkdir()
    (workdir / "data/raw/zhihu/train.jsonl").write_text("{}\n")
    (workdir / "data/reviews/zhihu.jsonl").write_text("")
    (workdir / "expectations/xhs.json").write_text("{}")
    dedup = {"cmd": "python -m stages.dedup", "outs": [{"path": "data/dedup"}]}
    lock = {"schema": "2.0", "stages": {**built_outputs(workdir, "zhihu"), **built_outputs(workdir, "xhs"), "dedup": dedup}}
    (workdir / "dvc.lock").write_text(json.dumps(lock))
    before = {p.relative_to(workdir).as_posix(): p.read_bytes() for p in workdir.rglob("*")
              if p.is_file() and "xhs" not in p.as_posix()}

    result = invoke("category", "remove", "xhs")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Removed category xhs:",
        "  params.yaml  categories.xhs",
        "  removed      data/raw/xhs/",
        "  removed      data/reviews/xhs.jsonl",
        "  removed      data/stages/xhs/ (3 files)",
        "  removed      data/publish/xhs.json",
        "  removed      data/release/xhs/",
        "  removed      data/release/lineage/xhs/",
        "  removed      data/dedup/xhs.jsonl",
        "  dvc.lock     category@xhs, publish@xhs",
        "  .gitignore   data/publish/.gitignore, data/release/.gitignore, data/release/lineage/.gitignore "
        "(the lines of its outputs)",
        "Next: dvc repro   (reruns dedup, merge and report without xhs), then git commit -am 'Remove category xhs'",
    ]
    assert (workdir / "params.yaml").read_text(encoding="utf-8") == PARAMS_TEXT
    left = sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*") if "xhs" in p.name)
    assert left == ["expectations/xhs.json"]  # a suite is kept: another category may take it up
    assert not (workdir / "data/stages/xhs").exists()
    after = {p.relative_to(workdir).as_posix(): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert changed == ["data/publish/.gitignore", "data/release/.gitignore", "data/release/lineage/.gitignore",
                       "dvc.lock", "params.yaml"]
    assert (workdir / "data/release/.gitignore").read_text() == "/zhihu\n"
    assert sorted(YAML(typ="safe").load((workdir / "dvc.lock").read_text())["stages"]) == \
        ["category@zhihu", "dedup", "publish@zhihu"]


@pytest.mark.process
def test_remove_cleans_up_after_an_entry_removed_by_hand(workdir):
    dedup = {"cmd": "python -m stages.dedup", "outs": [{"path": "data/dedup"}]}
    (workdir / "dvc.lock").write_text(json.dumps({"stages": {**built_outputs(workdir, "douban"), "dedup": dedup}}))
    result = invoke("category", "remove", "douban", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["params_entry"], report["dvc_lock"]) == (False, ["category@douban", "publish@douban"])
    assert not [p for p in workdir.rglob("*") if "douban" in p.name]
    assert (workdir / "params.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes()


@pytest.mark.parametrize("name, message", [
    ("zhihuu", "error: params.yaml: unknown category 'zhihuu'. Did you mean 'zhihu'? "
               "Available categories: ['100poison', 'human_value', 'zhihu']"),
    ("douban", "error: params.yaml: unknown category 'douban'. Available categories: ['100poison', 'human_value', 'zhihu']"),
    ("../data", "error: params.yaml: category name '../data' is not allowed. Use lower-case letters, digits and '_' "
                "only (it becomes a directory name; no '/' or '..')"),
])
def test_remove_refusals_are_one_line_and_change_nothing(workdir, name, message):
    before = (workdir / "params.yaml").read_bytes()
    result = CliRunner().invoke(cli, ["category", "remove", name])
    assert (result.exit_code, result.output.strip()) == (1, message)
    assert (workdir / "params.yaml").read_bytes() == before


def test_remove_refuses_the_last_category(workdir):
    for name in ("100poison", "human_value"):
        assert invoke("category", "remove", name).exit_code == 0
    (workdir / "data/raw/zhihu").mkdir(parents=True)
    (workdir / "data/raw/zhihu/train.jsonl").write_text("{}\n")
    before = (workdir / "params.yaml").read_bytes()
    result = CliRunner().invoke(cli, ["category", "remove", "zhihu"])
    assert (result.exit_code, result.output.strip()) == (1, (
        "error: params.yaml: categories.zhihu: category 'zhihu' is the only one. "
        "A release needs at least one; add another first (`cqia category add`)"))
    assert (workdir / "params.yaml").read_bytes() == before
    assert (workdir / "data/raw/zhihu/train.jsonl").is_file()
