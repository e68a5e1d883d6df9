"""`cqia lineage`, `history` and `diff` without a repository: how lineage steps read, what the
commands say about ids, categories and revisions that do not exist. (tests/test_audit_e2e.py
drives them on tagged releases with the real git and dvc.)"""

import orjson
import pytest
from test_records import ENTRY, run
from test_records import poison_line as poison

from conftest import as_registry
from cqia.cli.audit import _step_line
from cqia.ingest.decisions import load_decisions
from cqia.ingest.judge import make_id
from cqia.publish.core import dedup_step
from cqia.registry.audit import readable_steps

POISON = dict(ENTRY, rules={"min_chars": {"output": 2}, "pii": {"email": "mask", "phone": "mask"}})
FULL = {"instruction": "新手如何开始学习编程？", "input": "", "output": "先选一门语言，每天写一点代码。",
        "task_type": {"major": ["问答"], "minor": []}, "domain": ["科技"], "metadata": "",
        "answer_from": "human", "human_verified": False, "copyright": "c"}


def steps_of(lines, entry=POISON, decisions=None):
    """The lineage steps the category core writes for `lines`, one list per raw line."""
    return [readable_steps(outcome.lineage) for outcome in run(lines, entry, decisions)[1]]


def test_the_steps_of_a_record_the_core_transforms_read_as_what_was_done():
    [steps] = steps_of([poison("ＡＩ客服电话？", "发邮件到 zhang@example.com，或打 13812345678")])
    assert [_step_line(step) for step in steps] == [
        "parse      poison-mpts (jsonl): pass",
        "map        defaults for task_type, domain, metadata, answer_from, human_verified, copyright",
        "normalize  instruction [fullwidth_ascii]: ＡＩ客服电话？ → AI客服电话？",
        # before and after are the same text in the published lineage (its PII is masked in both)
        "mask       output [email, phone]: 发邮件到 [EMAIL]，或打 [PHONE]",
        "rules      pass",
        "schema     pass",
    ]


def test_a_mask_step_quotes_the_text_around_its_first_mask_token():
    long = "这是一段很长的回答，" * 8 + "联系邮箱 zhang@example.com。"
    [steps] = steps_of([poison("问题", long)])
    [mask] = [step for step in steps if step["step"] == "mask"]
    assert mask["before"] == mask["after"]
    assert _step_line(mask) == "mask       output [email]: …这是一段很长的回答，联系邮箱 [EMAIL]。"


def test_a_map_step_without_defaults_says_the_fields_came_from_the_raw_record():
    raw = dict(FULL, extra_key=1)
    entry = {"format": "cqia-jsonl", "raw": ["train.jsonl"], "rules": {"min_chars": {"output": 2}}}
    [steps] = steps_of([orjson.dumps(raw).decode()], entry)
    assert _step_line(steps[1]) == "map        every field from the raw record; dropped keys extra_key"


@pytest.mark.parametrize("line, expected", [
    ('{"prompt": "问题"', "parse      poison-mpts (jsonl): reject invalid_json "),
    ('{"prompt": "问题"}', "map        reject missing_field (field 'answer' is missing)"),
    (poison("问题", "好"), "rules      reject too_short ("),
], ids=["parse", "map", "rules"])
def test_a_step_that_rejects_names_its_reason_and_detail(line, expected):
    [steps] = steps_of([line])
    assert _step_line(steps[-1]).startswith(expected)


def test_review_steps_pending_accepted_and_rejected():
    review = dict(POISON, review={"require_accept": True})
    line = poison("问题", "回答内容")
    [pending] = steps_of([line], review)
    assert _step_line(pending[-1]) == "review     pending (this category releases only records a reviewer accepted)"
    record_id = make_id("t", orjson.loads(line), "", 0)
    log = [orjson.dumps({"id": record_id, "decision": "reject", "reviewer": "li", "date": "2024-01-02",
                         "note": "答非所问"})]
    [rejected] = steps_of([line], review, load_decisions(log, "r.jsonl"))
    assert _step_line(rejected[-1]) == "review     reject by li on 2024-01-02 (答非所问)"
    log = [orjson.dumps({"id": record_id, "decision": "accept", "reviewer": "li", "date": "2024-01-02"})]
    [accepted] = steps_of([line], review, load_decisions(log, "r.jsonl"))
    assert _step_line(accepted[-2]) == "review     accept by li on 2024-01-02"


@pytest.mark.parametrize("decision, expected", [
    (None, "dedup      pass"),
    ({"id": "t-2", "near_duplicates": ["t-5", "t-9"]},
     "dedup      pass; near duplicates dropped: t-5, t-9 (this one was kept: first in release order)"),
    ({"id": "t-2", "reason": "duplicate_of:t-1", "duplicate_of": "t-1"}, "dedup      reject duplicate_of:t-1"),
    ({"id": "t-2", "reason": "near_duplicate_of:t-1", "near_duplicate_of": "t-1", "similarity": 0.9296875,
      "output_similarity": 0.875, "threshold": 0.8, "ngram": 5},
     "dedup      reject near_duplicate_of:t-1 (similarity 0.93, output similarity 0.88, threshold 0.80, "
     "n-gram size 5; the other was kept: first in release order)"),
], ids=["pass", "kept-with-near-duplicates", "duplicate", "near-duplicate"])
def test_dedup_steps(decision, expected):
    step, _, _ = dedup_step(decision)
    assert _step_line(step) == expected


def test_a_step_of_an_unknown_shape_shows_its_keys_instead_of_failing():
    assert _step_line({"step": "gate", "result": "pass"}) == "gate       ? suite '?': pass"
    assert _step_line({"step": "translate", "result": "pass", "model": "x"}) == "translate  pass model=x"
    assert _step_line({"step": "review", "decision": "accept"}) == "review     accept by ? on ?"


# --------------------------------------------------------------------------- where the registry is

METRICS = {"version": "v0.1", "released": 3, "categories": {
    "t": {"raw": 4, "released": 3, "rejected": 1, "rejected_by_reason": {"too_short": 1}}}}


def cqia(*args):
    from click.testing import CliRunner

    from cqia.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_summary_finds_the_registry_from_a_subdirectory(tmp_path, monkeypatch):
    (as_registry(tmp_path) / "data/release").mkdir(parents=True)
    (tmp_path / "data/release_metrics.json").write_bytes(orjson.dumps(METRICS))
    monkeypatch.chdir(tmp_path / "data/release")
    result = cqia("summary")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Release v0.1: 3 records in ../../data/release/"
    assert lines[4] == "t           4         3         1  too_short 1"
    assert lines[-1] == "Dataset card: ../../data/release/README.md"


OUTSIDE = [
    (("summary",), False), (("lineage", "t-0123456789abcdef"), True), (("history", "t-0123456789abcdef"), True),
    (("diff", "v0.1", "v0.2"), True), (("export", "--format", "alpaca"), True), (("verify",), False),
    (("release", "v0.9"), False), (("review", "export", "t"), False),
    (("review", "import", "sheet.csv", "--reviewer", "li"), False),
    (("category", "add", "x", "--format", "cqia-jsonl", "--raw", "x.jsonl"), False),
]


@pytest.mark.parametrize("args, has_repo", OUTSIDE, ids=[" ".join(a[:2]) for a, _ in OUTSIDE])
def test_outside_a_registry_every_command_says_so_in_one_line(tmp_path, monkeypatch, args, has_repo):
    monkeypatch.chdir(tmp_path)
    result = cqia(*args)
    assert result.exit_code == 1
    assert result.output == (f"error: {tmp_path}: not inside a cqia registry (no dvc.yaml and .dvc/ here or above). "
                             "cd into the registry's clone" + (", or pass --repo PATH" if has_repo else "") + "\n")


def test_the_search_stops_at_another_git_repository(tmp_path, monkeypatch):
    inner = as_registry(tmp_path) / "vendor" / "tool"
    (inner / ".git").mkdir(parents=True)
    monkeypatch.chdir(inner)
    assert cqia("summary").output.startswith(f"error: {inner}: not inside a cqia registry")
    monkeypatch.chdir(inner.parent)
    assert cqia("summary").output == "error: ../data/release_metrics.json: no release built yet. Run `make repro` (or `dvc repro`)\n"


# --------------------------------------------------------------------------- history when tags cannot be read

def stub_releases(monkeypatch, unreadable, holds=()):
    """audit.Release replaced: tags in `unreadable` raise ReleaseUnavailable, the others hold the ids
    in `holds` (released); the workspace has no release built."""
    from cqia.common.errors import CqiaError, ReleaseUnavailable
    from cqia.registry import audit

    class Stub:
        def __init__(self, repo, rev):
            if rev is None:
                raise CqiaError("no release built in this working tree")
            if rev in unreadable:
                raise ReleaseUnavailable("the release is in neither the local DVC cache nor the DVC remote",
                                         where=f"{rev}:data/release/manifest.json", fix="Run `dvc push`")
            self.label, self.categories = rev, {"z": {}}

        def entry(self, record_id):
            return {"status": "released", "record_hash": b"h", "category": "z"} if record_id in holds else None

        def close_ids(self, record_id):
            return []

    monkeypatch.setattr(audit, "Release", Stub)


def test_history_when_no_tag_can_be_read_says_so(monkeypatch):
    from cqia.common.errors import ReleaseUnavailable
    from cqia.registry import audit

    stub_releases(monkeypatch, unreadable={"v0.1", "v0.2"})
    with pytest.raises(ReleaseUnavailable) as caught:
        audit.history("z-0000000000000001", tags=["v0.1", "v0.2"])
    assert str(caught.value) == (
        "no release tag could be read (v0.1, v0.2); the first says: v0.1:data/release/manifest.json: "
        "the release is in neither the local DVC cache nor the DVC remote. Run `dvc push`")


def test_history_not_in_the_tags_read_names_the_tags_not_checked(monkeypatch):
    from cqia.cli.audit import render_history
    from cqia.registry import audit

    stub_releases(monkeypatch, unreadable={"v0.2"})
    result = audit.history("z-0000000000000001", tags=["v0.1", "v0.2"])
    assert render_history(result).splitlines()[-1] == "not released in the tags read; not checked: v0.2"
    assert render_history({"id": "z-0000000000000001", "releases": [], "first_release": None}).splitlines() == [
        "z-0000000000000001", "never released (no release tags yet)"]


def test_history_of_an_id_no_release_holds_is_an_error(monkeypatch):
    from cqia.common.errors import CqiaError
    from cqia.registry import audit

    stub_releases(monkeypatch, unreadable=set(), holds={"z-0000000000000001"})
    with pytest.raises(CqiaError) as caught:
        audit.history("z-0000000000000002", tags=["v0.1"])
    assert str(caught.value) == ("no record with id 'z-0000000000000002' in release tags v0.1. "
                                 "Check the id; rejected records are included too")


# --------------------------------------------------------------------------- errors under --json

def test_an_error_under_json_is_one_json_object_on_stderr(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (("lineage", "t-0123456789abcdef", "--json"), ("review", "export", "t", "--json")):
        result = cqia(*args)
        assert result.exit_code == 1 and result.stdout == ""
        assert orjson.loads(result.stderr) == {
            "error": "not inside a cqia registry (no dvc.yaml and .dvc/ here or above)", "where": str(tmp_path),
            "fix": "cd into the registry's clone" + (", or pass --repo PATH" if args[0] == "lineage" else "")}
    monkeypatch.chdir(as_registry(tmp_path))
    result = cqia("history", "foo", "--json")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert orjson.loads(result.stderr) == {
        "error": "'foo' is not a record id", "where": None,
        "fix": "An id is its source category, '-' and 16 hex digits, e.g. 'zhihu-3c6e79232441e093' "
               "(`cqia summary` lists the categories)"}
    assert cqia("history", "foo").stderr.startswith("error: 'foo' is not a record id. ")  # without --json: text


def test_json_after_a_double_dash_is_an_argument():
    from cqia.cli import wants_json

    assert wants_json(["lineage", "x", "--json"]) and not wants_json(["lineage", "--", "--json"])
