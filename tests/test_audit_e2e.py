"""`cqia lineage`, `history` and `diff` on releases tagged in a temporary repo (real git and dvc)."""

import json

import orjson
import pytest
from ruamel.yaml import YAML

from cqia.ingest.judge import make_id
from tests.conftest import BIN, make_repo

pytestmark = pytest.mark.e2e


def poison(prompt, answer, en="law", zh="法理学"):
    return {"prompt": prompt, "answer": answer, "domain_en": en, "domain_zh": zh}


R = {
    1: poison("法律为什么要保护犯罪嫌疑人的权利？", "因为在判决之前，任何人都应被推定无罪，程序正义保护的是每一个人。"),
    2: poison("ＡＩ写的判决书可信吗？", "目前只能作为辅助，判决需要法官依据事实和法律作出并承担责任。"),
    3: poison("离婚冷静期有必要吗？", "它给冲动离婚的夫妻一个缓冲期，但对家暴等情形应当有例外。", "intimate_relationship", "亲密关系"),
    4: poison("数据标注员算不算技术岗位？", "标注需要理解任务规范和领域知识，是数据工程中不可缺少的一环。", "data_science", "数据科学"),
    5: poison("考古专业毕业后能做什么？", "可以进入博物馆、考古研究所、文物保护机构，也可以从事文化传播。", "lesser_known_major", "冷门专业"),
    6: poison("社会学研究会不会只是常识？", "社会学用系统的数据和方法检验常识，很多常识经不起检验。", "social_science", "社会学"),
    7: poison("环保袋真的更环保吗？", "取决于使用次数，一个布袋要重复使用很多次才比塑料袋更环保。", "environmental_science", "环境科学"),
}
DUP = {"answer": R[1]["answer"], "prompt": R[1]["prompt"], "domain_en": "law", "domain_zh": "法理学"}
ZHIHU_OK = {"instruction": "新手如何开始学习编程？", "input": "", "output": "先选一门语言，比如Python，每天写一点代码，做一个小项目。",
            "task_type": {"major": ["问答"], "minor": ["知乎问答"]}, "domain": ["科技"], "metadata": "",
            "answer_from": "human", "human_verified": False, "copyright": "作者授权"}
ZHIHU_BAD = dict(ZHIHU_OK, instruction="怎样保持专注？", answer_from="")


def rid(n):
    return make_id("law", R[n], "", 0)


def write_raw(repo, numbers, extra=()):
    lines = [orjson.dumps(R[n]) for n in numbers] + [orjson.dumps(e) for e in extra]
    repo.file("data/raw/law/train.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def set_fullwidth(repo, on):
    yaml = YAML()
    path = repo.file("params.yaml")
    data = yaml.load(path.read_text(encoding="utf-8"))
    data["categories"]["law"]["normalize"] = {"fullwidth_ascii": on}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.dump(data, handle)


def cut(repo, version):
    yaml = YAML()
    path = repo.file("params.yaml")
    data = yaml.load(path.read_text(encoding="utf-8"))
    data["release"]["version"] = version
    with open(path, "w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    repo.dvc("repro")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", f"release {version}")
    repo.git("tag", "-a", version, "-m", version)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """v0.1: R1-R5 + a duplicate of R1; v0.2: full-width rule on (R2 changes), +R6 +R7, -R5; v0.3: -R2."""
    repo = make_repo(tmp_path_factory.mktemp("audit"))
    for name in ("100poison", "human_value", "zhihu"):
        repo.git("rm", "-r", "-q", f"data/raw/{name}", f"data/reviews/{name}.jsonl")
    for name in ("data/raw/law", "data/raw/zhihu", "data/reviews"):
        repo.file(name).mkdir(parents=True, exist_ok=True)
    repo.file("data/raw/zhihu/train.jsonl").write_bytes(orjson.dumps(ZHIHU_OK) + b"\n" + orjson.dumps(ZHIHU_BAD) + b"\n")
    review = {"id": rid(3), "decision": "reject", "reviewer": "chen", "note": "答案不完整", "date": "2024-05-01"}
    repo.file("data/reviews/law.jsonl").write_bytes(orjson.dumps(review) + b"\n")
    repo.file("data/reviews/zhihu.jsonl").write_bytes(b"")
    yaml = YAML()
    params = yaml.load(repo.file("params.yaml").read_text(encoding="utf-8"))
    law = params["categories"]["100poison"]
    law["raw"] = ["train.jsonl"]
    zhihu = params["categories"]["zhihu"]
    params["categories"] = {"law": law, "zhihu": zhihu}
    with open(repo.file("params.yaml"), "w", encoding="utf-8") as handle:
        yaml.dump(params, handle)
    set_fullwidth(repo, False)
    write_raw(repo, [1, 2, 3, 4, 5], [DUP])
    cut(repo, "v0.1")
    set_fullwidth(repo, True)
    write_raw(repo, [1, 2, 3, 4, 6, 7], [DUP])
    cut(repo, "v0.2")
    write_raw(repo, [1, 3, 4, 6, 7], [DUP])
    cut(repo, "v0.3")
    return repo


def lineage(repo, record_id, *args):
    return json.loads(repo.cqia("lineage", record_id, "--json", *args).stdout)


def test_lineage_of_a_released_record(tagged):
    out = lineage(tagged, rid(1), "--rev", "v0.1")
    assert out["status"] == "released" and out["category"] == "law"
    assert out["source"]["file"] == "data/raw/law/train.jsonl" and out["source"]["line"] == 1
    assert len(out["source"]["md5"]) == 32
    assert out["raw"] == R[1]
    assert [s["step"] for s in out["steps"]] == ["parse", "map", "rules", "schema", "gate", "dedup"]
    assert out["release"] == "v0.1"
    assert out["releases"] == ["v0.1", "v0.2", "v0.3"]


def test_lineage_of_a_transformed_record(tagged):
    out = lineage(tagged, rid(2), "--rev", "v0.2")
    [norm] = [s for s in out["steps"] if s["step"] == "normalize"]
    assert norm == {"step": "normalize", "field": "instruction", "rules": ["fullwidth_ascii"],
                    "before": "ＡＩ写的判决书可信吗？", "after": "AI写的判决书可信吗？",
                    "edits": [[0, "ＡＩ", "AI"]]}     # stored: the edits; before and after rebuilt
    assert out["releases"] == ["v0.1", "v0.2"]


def test_lineage_of_a_duplicate_names_the_record_it_duplicates(tagged):
    dup_id = make_id("law", DUP, "", 1)
    out = lineage(tagged, dup_id)
    assert out["status"] == "rejected"
    assert out["reason"] == f"duplicate_of:{rid(1)}" and out["duplicate_of"] == rid(1)
    assert out["source"]["line"] == 6 and out["releases"] == []


def test_lineage_of_a_review_rejected_record(tagged):
    out = lineage(tagged, rid(3))
    assert out["reason"] == "review_rejected" and out["detail"] == "答案不完整"
    [review] = [s for s in out["steps"] if s["step"] == "review"]
    assert review["decision"] == "reject" and review["reviewer"] == "chen" and review["line"] == 1


def test_lineage_of_a_schema_rejected_record(tagged):
    out = lineage(tagged, make_id("zhihu", ZHIHU_BAD, "", 0), "--rev", "v0.2")
    assert out["reason"] == "schema_invalid"
    assert out["detail"] == "/answer_from: '' is not one of ['human', 'llm', 'expert']"
    assert out["steps"][-1] == {"step": "schema", "result": "reject", "reason": "schema_invalid",
                                "detail": out["detail"]}


def test_lineage_text_and_unknown_id(tagged):
    text = tagged.cqia("lineage", rid(2), "--rev", "v0.2").stdout
    assert "normalize  instruction [fullwidth_ascii]: ＡＩ写的判决书可信吗？ → AI写的判决书可信吗？" in text
    assert "released in tags: v0.1, v0.2" in text
    assert refused(tagged, "lineage", "law-0000000000000000") == (
        "error: no record with id 'law-0000000000000000' in the workspace release or release tags v0.1, v0.2, v0.3. "
        "Check the id; rejected records are included too")
    assert refused(tagged, "diff", "v9", "v0.1") == (
        "error: v9:data/release/manifest.json: unknown revision 'v9'. Release tags: v0.1, v0.2, v0.3; "
        "or pass a branch or commit")


def refused(repo, *args, cwd=None):
    """The one line of stderr of a cqia command that must exit 1."""
    proc = repo.run(str(BIN / "cqia"), *args, check=False, cwd=cwd)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr.strip()


def test_lineage_of_an_id_only_tags_hold_names_them_from_any_directory(tagged):
    data = tagged.file("data")
    assert refused(tagged, "lineage", rid(2), cwd=data) == (
        f"error: no record with id '{rid(2)}' in the workspace release; released in tags v0.1, v0.2. "
        f"Read it there: `cqia lineage {rid(2)} --rev v0.2`")
    assert refused(tagged, "lineage", rid(6), "--rev", "v0.1") == (
        f"error: no record with id '{rid(6)}' in the release at v0.1; released in tags v0.2, v0.3; "
        f"in the workspace release. Read it there: `cqia lineage {rid(6)}`")
    text = tagged.run(str(BIN / "cqia"), "lineage", rid(2), "--rev", "v0.2", cwd=data).stdout
    assert text.splitlines()[0] == f"{rid(2)}  released"
    history = tagged.run(str(BIN / "cqia"), "history", rid(2), cwd=data / "release").stdout
    assert history.splitlines()[-1] == "first released in v0.1; last changed in v0.2"


def test_unknown_ids_categories_and_revisions_are_errors_that_name_what_exists(tagged):
    typo = rid(1)[:-1] + ("0" if rid(1)[-1] != "0" else "1")
    assert refused(tagged, "history", typo) == (
        f"error: no record with id '{typo}' in the workspace release or release tags v0.1, v0.2, v0.3. "
        f"Did you mean '{rid(1)}'? Rejected records are included too")
    assert refused(tagged, "history", "foo") == (
        "error: 'foo' is not a record id. An id is its source category, '-' and 16 hex digits, "
        "e.g. 'zhihu-3c6e79232441e093' (`cqia summary` lists the categories)")
    assert refused(tagged, "history", "lew-0123456789abcdef") == (
        "error: no source category 'lew' in the workspace release or release tags v0.1, v0.2, v0.3. "
        "Did you mean 'law'? Categories: law, zhihu")
    assert refused(tagged, "diff", "v0.1", "v0.2", "--category", "zhihi") == (
        "error: --category: no source category 'zhihi' in v0.1 or v0.2. Did you mean 'zhihu'? Categories there: law, zhihu")
    assert refused(tagged, "lineage", rid(1), "--rev", "v0.22") == (
        "error: v0.22:data/release/manifest.json: unknown revision 'v0.22'. Did you mean 'v0.2'? "
        "Release tags: v0.1, v0.2, v0.3; or pass a branch or commit")


def test_history_added_changed_removed(tagged):
    out = json.loads(tagged.cqia("history", rid(2), "--json").stdout)
    assert [(r["rev"], r["state"]) for r in out["releases"]] == [("v0.1", "added"), ("v0.2", "changed"), ("v0.3", "absent")]
    assert out["releases"][1]["fields"] == ["instruction"]
    assert out["first_release"] == "v0.1" and out["last_changed"] == "v0.2"
    text = tagged.cqia("history", rid(2)).stdout
    assert "v0.2       changed (instruction)" in text


def test_diff_counts_exactly(tagged):
    out = json.loads(tagged.cqia("diff", "v0.1", "v0.2", "--json").stdout)
    law = out["categories"]["law"]
    assert sorted(law["added"]) == sorted([rid(6), rid(7)])
    assert law["removed"] == [rid(5)]
    assert law["modified"] == [{"id": rid(2), "fields": ["instruction"]}]
    assert out["totals"] == {"added": 2, "removed": 1, "modified": 1}
    assert "zhihu" not in out["categories"]
    out = json.loads(tagged.cqia("diff", "v0.2", "v0.3", "--json", "--category", "law").stdout)
    assert out["totals"] == {"added": 0, "removed": 1, "modified": 0}
    text = tagged.cqia("diff", "v0.1", "workspace").stdout
    assert text.splitlines()[0] == "v0.1 → workspace: 2 added, 2 removed, 0 modified"


def test_summary_of_a_tag_reads_its_committed_metrics(tagged):
    committed = json.loads(tagged.git("show", "v0.1:data/release_metrics.json").stdout)
    assert json.loads(tagged.cqia("summary", "--rev", "v0.1", "--json").stdout) == committed
    text = tagged.run(str(BIN / "cqia"), "summary", "--rev", "v0.1", cwd=tagged.file("data")).stdout.splitlines()
    assert text[0] == f"Release v0.1: {committed['released']} records in data/release/ at v0.1"
    assert text[-1] == ("Read it without a checkout: cqia lineage ID --rev v0.1, cqia export --rev v0.1, "
                        "cqia verify --rev v0.1")
    assert refused(tagged, "summary", "--rev", "v0.11") == (
        "error: v0.11:data/release_metrics.json: unknown revision 'v0.11'. Did you mean 'v0.1'? "
        "Release tags: v0.1, v0.2, v0.3; or pass a branch or commit")
    first = tagged.git("rev-list", "--max-parents=0", "HEAD").stdout.strip()
    assert refused(tagged, "summary", "--rev", first) == (
        f"error: {first}:data/release_metrics.json: no release at this revision. "
        "Pass a revision that has one (`git tag` lists the releases)")
