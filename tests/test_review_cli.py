"""The review workflow through the CLI: `cqia review export` and `cqia review import`.

Fast tests build a category stage's outputs with the real category core (cqia/ingest/judge.py)
in a temp directory and drive the CLI with click's CliRunner; one end-to-end test runs the
round trip in a temp git + DVC repo, with `dvc repro` before and after.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from conftest import as_registry, release_lineage
from cqia.cli import cli
from cqia.common.fileio import EMPTY_JSONL, dumps_line, open_write, read_jsonl
from cqia.common.params import load_yaml
from cqia.dedup.keys import KeysBuilder, decide
from cqia.gates.schema import RecordSchema
from cqia.ingest.config import load_checked_category
from cqia.ingest.decisions import load_decisions
from cqia.ingest.formats import parse_json_array, parse_jsonl
from cqia.ingest.judge import Processor, Source
from cqia.registry.review_sheets import dedup_drops
from tests.conftest import ROOT

LONG = "诚信是商业活动得以持续的基础。对企业而言，诚实守信意味着如实介绍产品、按时履行合同、不做虚假宣传。"
HUMAN_VALUE = [
    {"instruction": "请谈谈你对诚信在商业活动中的重要性的看法。", "input": "", "output": LONG},
    {"instruction": "如果你在路上捡到一个钱包，你会怎么做？", "input": "", "output": "交给警察。\u200b"},
    {"instruction": "请判断下面这种做法是否妥当。", "input": "把私人聚餐的发票混在业务招待费里报销。", "output": ""},
    {"instruction": "在團隊合作中，同事的失誤導致項目延誤，你會怎麼處理？", "input": "", "output": "先解决问题，再复盘原因。"},
]
ZHIHU = [
    {"instruction": "三十岁转行做程序员还来得及吗？", "input": "", "output": "来得及，但前提是想清楚自己为什么转，并且愿意持续投入时间。",
     "task_type": {"major": ["问答"], "minor": ["经验分享"]}, "domain": ["职场"], "metadata": "",
     "answer_from": "human", "human_verified": False, "copyright": "作者授权"},
    {"instruction": "红烧肉怎么做才能不腻？", "input": "", "output": "先焯水去掉浮沫，再用少量油把肉煸出油脂，最后小火慢炖。",
     "task_type": {"major": ["问答"], "minor": ["生活"]}, "domain": ["美食"], "metadata": "",
     "answer_from": "human", "human_verified": True, "copyright": "作者授权"},
]


def build_stage(root: Path, name: str, raw_bytes: bytes, raw_name: str, array: bool) -> None:
    """data/raw/<name>/<raw_name> and the stage outputs, as `stages/category.py` writes them (minus the GX gate)."""
    params = load_yaml(root / "params.yaml")
    category = load_checked_category(params, name)
    raw = root / "data" / "raw" / name / raw_name
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(raw_bytes)
    reviews = root / "data" / "reviews" / f"{name}.jsonl"
    with open(reviews, "rb") as handle:
        decisions = load_decisions(handle, str(reviews))
    processor = Processor(category, RecordSchema.from_file(root / "schemas/record.schema.json"), decisions)
    items = parse_json_array(raw_bytes) if array else parse_jsonl(raw_bytes.splitlines(keepends=True))
    out = root / "data" / "stages" / name
    out.mkdir(parents=True, exist_ok=True)
    with open_write(out / "accepted.jsonl.zst") as acc, open_write(out / "lineage.jsonl.zst") as lin, \
            open(out / "rejects.jsonl", "wb") as rej:
        for outcome in processor.process(Source(f"data/raw/{name}/{raw_name}", "0" * 32), items):
            if outcome.accepted:
                acc.write(dumps_line(outcome.record))
                lin.write(dumps_line(outcome.lineage))
            else:
                rej.write(dumps_line(outcome.lineage))


def build_dedup(root: Path) -> None:
    """data/dedup/<category>.jsonl of the built stages, with the dedup core (exact duplicates, as
    `stages/dedup.py` decides them with neardup off)."""
    parts = []
    for stage in sorted((root / "data" / "stages").iterdir()):
        keys = KeysBuilder(stage.name, None)
        for record in read_jsonl(stage / "accepted.jsonl.zst"):
            keys.add(record)
        parts.append(keys.build())
    out = root / "data" / "dedup"
    out.mkdir(exist_ok=True)
    for name, decisions in decide(parts, None).items():
        (out / f"{name}.jsonl").write_bytes(b"".join(dumps_line(d) for d in decisions))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    (tmp_path / "data" / "reviews").mkdir(parents=True)
    for name in ("100poison", "human_value", "zhihu"):
        (tmp_path / "data" / "reviews" / f"{name}.jsonl").write_bytes(EMPTY_JSONL)   # as the repository's
    build_stage(tmp_path, "human_value", orjson.dumps(HUMAN_VALUE, option=orjson.OPT_INDENT_2),
                "human_value_alignment_instructions_part1.json", array=True)
    build_stage(tmp_path, "zhihu", b"".join(dumps_line(r) for r in ZHIHU), "train.jsonl", array=False)
    build_dedup(tmp_path)
    monkeypatch.chdir(as_registry(tmp_path))
    return tmp_path


def cqia(*args: str):
    return CliRunner().invoke(cli, list(args))


def ids_of(stage: Path, reason: str | None = None, accepted: bool = False) -> list[str]:
    if accepted:
        return [record["id"] for record in read_jsonl(stage / "accepted.jsonl.zst")]
    return [e["id"] for e in read_jsonl(stage / "rejects.jsonl") if e["reason"] == reason]


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def write_csv(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8-sig"))


def test_export_writes_the_pending_records_as_jsonl_and_csv(workdir: Path):
    stage = workdir / "data/stages/human_value"
    pending = ids_of(stage, "review_pending")
    assert len(pending) == 3 and len(ids_of(stage, "empty_output")) == 1
    result = cqia("review", "export", "human_value")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Wrote 3 of 3 pending records of human_value to out/review/human_value.jsonl "
                                    "and out/review/human_value.csv.\n")
    rows = list(read_jsonl(workdir / "out/review/human_value.jsonl"))
    assert [r["id"] for r in rows] == pending                       # rule rejects are not on the sheet
    first = rows[0]
    assert first["decision"] == "" and first["note"] == "" and first["status"] == "review_pending"
    assert first["instruction"] == HUMAN_VALUE[0]["instruction"] and first["output"] == LONG
    assert first["task_type"] == {"major": ["试题"], "minor": ["选择题"]}
    assert first["source"] == "data/raw/human_value/human_value_alignment_instructions_part1.json:2 (item 1)"
    assert first["hints"].startswith("defaults: task_type, domain")
    assert rows[1]["output"] == "交给警察。"                          # as released: zero-width space removed
    assert "normalize output: " in rows[1]["hints"]
    table = read_csv(workdir / "out/review/human_value.csv")
    assert table[0][:3] == ["id", "decision", "note"]
    assert [r[0] for r in table[1:]] == pending
    assert table[1][7] == LONG


def test_export_lists_released_records_nobody_verified(workdir: Path):
    result = cqia("review", "export", "zhihu", "--json")
    assert result.exit_code == 0, result.output
    info = orjson.loads(result.output)
    assert (info["pending"], info["written"]) == (1, 1)
    rows = list(read_jsonl(workdir / info["jsonl"]))
    assert [(r["instruction"], r["status"]) for r in rows] == [("三十岁转行做程序员还来得及吗？", "released")]
    assert cqia("review", "export", "zhihu").output.startswith(
        "Wrote 1 of 1 pending record of zhihu to out/review/zhihu.jsonl and out/review/zhihu.csv.\n")


def test_import_counts_one_decision_as_one(workdir: Path):
    cqia("review", "export", "zhihu")
    rows = read_csv(workdir / "out/review/zhihu.csv")
    rows[1][1] = "accept"
    write_csv(workdir / "out/review/zhihu.csv", rows)
    result = cqia("review", "import", "out/review/zhihu.csv", "--reviewer", "li.na")
    assert result.output == ("Appended 1 decision to data/reviews/zhihu.jsonl (1 accept, 0 reject). "
                             "0 already recorded, 0 left undecided.\nRun `dvc repro` to apply them.\n")


def test_records_dedup_drops_are_not_pending_and_take_no_decision(workdir: Path):
    # The same answer posted twice, neither verified: dedup keeps the first and drops the repost.
    repost = dict(ZHIHU[0], metadata="repost")
    build_stage(workdir, "zhihu", b"".join(dumps_line(r) for r in [*ZHIHU, repost]), "train.jsonl", array=False)
    build_dedup(workdir)
    first, _, dropped = ids_of(workdir / "data/stages/zhihu", accepted=True)
    assert list(read_jsonl(workdir / "data/dedup/zhihu.jsonl")) == [
        {"id": dropped, "reason": f"duplicate_of:{first}", "duplicate_of": first}]
    info = orjson.loads(cqia("review", "export", "zhihu", "--json").output)
    assert (info["pending"], info["written"]) == (1, 1)
    assert [r["id"] for r in read_jsonl(workdir / info["jsonl"])] == [first]
    # A sheet with a decision on the dropped record (an old sheet, or a hand-added row) is refused.
    write_csv(workdir / "sheet.csv", [["id", "decision", "note"], [first, "accept", ""], [dropped, "accept", ""]])
    result = cqia("review", "import", "sheet.csv", "--reviewer", "li.na")
    assert (result.exit_code, result.output) == (1, (
        f"error: sheet.csv:3: id '{dropped}' was dropped by dedup as a duplicate of {first}, so a decision on "
        "it would not be used. Remove the row\n"))
    assert (workdir / "data/reviews/zhihu.jsonl").read_bytes() == EMPTY_JSONL         # nothing written


def test_dedup_drops_name_the_record_kept():
    assert dedup_drops([
        {"id": "zhihu-01", "reason": "duplicate_of:zhihu-00", "duplicate_of": "zhihu-00"},
        {"id": "zhihu-02", "reason": "near_duplicate_of:zhihu-00", "near_duplicate_of": "zhihu-00",
         "similarity": 0.9, "output_similarity": 1.0, "threshold": 0.8, "ngram": 5},
        {"id": "zhihu-00", "near_duplicates": ["zhihu-02"]},                       # kept: not a drop
    ]) == {"zhihu-01": "a duplicate of zhihu-00", "zhihu-02": "a near duplicate of zhihu-00"}


def test_export_needs_the_dedup_decisions(workdir: Path):
    (workdir / "data/dedup/zhihu.jsonl").unlink()
    result = cqia("review", "export", "zhihu")
    assert (result.exit_code, result.output) == (1, (
        "error: data/dedup/zhihu.jsonl: no dedup decisions for category 'zhihu'. Run `dvc repro dedup` first\n"))


def test_sample_is_deterministic_and_a_subset(workdir: Path):
    pending = ids_of(workdir / "data/stages/human_value", "review_pending")
    picks = []
    for out in ("a", "b"):
        assert cqia("review", "export", "human_value", "--sample", "2", "--seed", "7", "--out", out).exit_code == 0
        picks.append([r["id"] for r in read_jsonl(workdir / f"{out}.jsonl")])
    assert picks[0] == picks[1] and len(picks[0]) == 2
    assert set(picks[0]) <= set(pending) and picks[0] == [i for i in pending if i in picks[0]]
    chosen = set()
    for seed in range(8):
        cqia("review", "export", "human_value", "--sample", "2", "--seed", str(seed), "--out", "c")
        chosen.add(tuple(r["id"] for r in read_jsonl(workdir / "c.jsonl")))
    assert len(chosen) > 1                                          # the seed does choose


def fill(workdir: Path, decisions: dict[int, tuple[str, str]]) -> Path:
    sheet = workdir / "out/review/human_value.csv"
    rows = read_csv(sheet)
    for index, (decision, note) in decisions.items():
        rows[index + 1][1:3] = [decision, note]
    write_csv(sheet, rows)
    return sheet


def test_import_appends_decisions_and_skips_undecided_rows(workdir: Path):
    cqia("review", "export", "human_value")
    pending = ids_of(workdir / "data/stages/human_value", "review_pending")
    fill(workdir, {0: ("accept", ""), 2: (" Reject ", "答案没有回答问题")})
    result = cqia("review", "import", "out/review/human_value.csv", "--reviewer", "li.na", "--date", "2024-05-01")
    assert result.exit_code == 0, result.output
    assert result.output == ("Appended 2 decisions to data/reviews/human_value.jsonl (1 accept, 1 reject). "
                             "0 already recorded, 1 left undecided.\nRun `dvc repro` to apply them.\n")
    lines = (workdir / "data/reviews/human_value.jsonl").read_bytes().splitlines()   # no blank line first
    assert [orjson.loads(line) for line in lines] == [
        {"id": pending[0], "decision": "accept", "reviewer": "li.na", "note": "", "date": "2024-05-01"},
        {"id": pending[2], "decision": "reject", "reviewer": "li.na", "note": "答案没有回答问题", "date": "2024-05-01"},
    ]
    again = cqia("review", "import", "out/review/human_value.csv", "--reviewer", "li.na", "--date", "2024-05-02")
    assert again.output == "No new decisions. 2 already recorded, 1 left undecided.\n"
    assert (workdir / "data/reviews/human_value.jsonl").read_bytes().splitlines() == lines
    # Decided records are no longer pending.
    assert orjson.loads(cqia("review", "export", "human_value", "--json").output)["pending"] == 1


def accept_in_jsonl_sheet(sheet: Path, row: int) -> tuple[str, dict]:
    """Mark one row of a JSON Lines sheet `accept`, import the sheet, and return the id accepted."""
    rows = list(read_jsonl(sheet))
    rows[row]["decision"] = "accept"
    sheet.write_bytes(b"".join(dumps_line(r) for r in rows))
    result = cqia("review", "import", sheet.name, "--reviewer", "wang.li", "--json")
    assert result.exit_code == 0, result.output
    return rows[row]["id"], orjson.loads(result.output)["appended"]


def test_import_reads_the_jsonl_sheet_too(workdir: Path):
    cqia("review", "export", "human_value", "--out", "sheet")
    _, appended = accept_in_jsonl_sheet(workdir / "sheet.jsonl", 1)
    assert appended == {"human_value": {"file": "data/reviews/human_value.jsonl", "accept": 1, "reject": 0}}


def test_export_and_import_work_from_a_subdirectory(workdir: Path, monkeypatch):
    """The registry is found above the working directory; the sheet is written and read where the user is."""
    here = workdir / "data" / "reviews"
    monkeypatch.chdir(here)
    result = cqia("review", "export", "human_value", "--out", "sheet", "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["jsonl"] == "sheet.jsonl"
    accepted, appended = accept_in_jsonl_sheet(here / "sheet.jsonl", 0)
    assert appended == {"human_value": {"file": "../../data/reviews/human_value.jsonl", "accept": 1, "reject": 0}}
    assert orjson.loads((workdir / "data/reviews/human_value.jsonl").read_bytes())["id"] == accepted


def sheet_error(workdir: Path, sheet: str, *extra: str) -> str:
    before = (workdir / "data/reviews/human_value.jsonl").read_bytes()
    result = cqia("review", "import", sheet, "--reviewer", "li.na", *extra)
    assert result.exit_code == 1
    assert (workdir / "data/reviews/human_value.jsonl").read_bytes() == before   # nothing appended
    assert result.output.count("\n") == 1
    return result.output.strip()


def test_unknown_ids_are_errors(workdir: Path):
    cqia("review", "export", "human_value")
    rows = read_csv(workdir / "out/review/human_value.csv")
    rows[1][1] = "accept"
    rows[2][0:2] = ["human_value-0000000000000000", "accept"]
    write_csv(workdir / "out/review/human_value.csv", rows)
    assert sheet_error(workdir, "out/review/human_value.csv") == (
        "error: out/review/human_value.csv:3: unknown id 'human_value-0000000000000000': not a record of category "
        "'human_value'. Check the id, or export a fresh sheet with `cqia review export human_value`")
    rows[2][0] = "xhs-0000000000000000"
    write_csv(workdir / "out/review/human_value.csv", rows)
    assert sheet_error(workdir, "out/review/human_value.csv") == (
        "error: out/review/human_value.csv:3: unknown id 'xhs-0000000000000000': it names no source category. "
        "Ids look like <category>-<16 hex digits>; categories: ['100poison', 'human_value', 'zhihu']")
    rows[2][0] = ids_of(workdir / "data/stages/human_value", "empty_output")[0]
    write_csv(workdir / "out/review/human_value.csv", rows)
    assert sheet_error(workdir, "out/review/human_value.csv") == (
        f"error: out/review/human_value.csv:3: id '{rows[2][0]}' was rejected as empty_output before review, "
        "so a decision on it would not be used. Remove the row")


def test_conflicting_decisions_are_errors(workdir: Path):
    cqia("review", "export", "human_value")
    pending = ids_of(workdir / "data/stages/human_value", "review_pending")
    rows = read_csv(workdir / "out/review/human_value.csv")
    rows.append(list(rows[1]))
    rows[1][1], rows[-1][1] = "accept", "accept"
    write_csv(workdir / "out/review/human_value.csv", rows)
    assert sheet_error(workdir, "out/review/human_value.csv") == (
        f"error: out/review/human_value.csv:5: id '{pending[0]}' is on the sheet twice (first on line 2). "
        "Keep one row per id")
    (workdir / "data/reviews/human_value.jsonl").write_bytes(dumps_line(
        {"id": pending[1], "decision": "accept", "reviewer": "wang.li", "note": "", "date": "2024-03-01"}))
    write_csv(workdir / "out/review/human_value.csv", [rows[0], rows[1], [pending[1], "reject", "不通顺"]])
    assert sheet_error(workdir, "out/review/human_value.csv") == (
        f"error: out/review/human_value.csv:3: conflicting decision for '{pending[1]}': the sheet says reject, but "
        "data/reviews/human_value.jsonl:1 says accept (wang.li, 2024-03-01). Agree on one decision; to change "
        "it, edit data/reviews/human_value.jsonl by hand (it is versioned with git)")


def test_bad_sheets_are_errors(workdir: Path):
    cqia("review", "export", "human_value")
    fill(workdir, {1: ("approve", "")})
    assert sheet_error(workdir, "out/review/human_value.csv") == (
        "error: out/review/human_value.csv:3: field 'decision' is 'approve'. Use accept or reject, or leave it "
        "empty to decide later")
    (workdir / "gbk.csv").write_bytes("id,decision,note\nhuman_value-0,accept,好\n".encode("gbk"))
    assert sheet_error(workdir, "gbk.csv") == (
        "error: gbk.csv: not UTF-8 (byte 39). Save the sheet as 'CSV UTF-8' in your spreadsheet program")
    (workdir / "notes.txt").write_text("id,decision\n")
    assert sheet_error(workdir, "notes.txt") == (
        "error: notes.txt: unknown sheet type '.txt'. Import the .jsonl or .csv file `cqia review export` wrote")
    assert sheet_error(workdir, "out/review/human_value.csv", "--reviewer", " ") == (
        "error: --reviewer: reviewer '' is not a usable name. Give a non-empty name on one line, "
        "e.g. --reviewer wang.li")
    result = cqia("review", "export", "xhs")
    assert result.exit_code == 1
    assert result.output == ("error: params.yaml: unknown category 'xhs'. "
                             "Available categories: ['100poison', 'human_value', 'zhihu']\n")


@pytest.mark.e2e
def test_round_trip_then_dvc_repro_releases_the_record_as_human_verified(repo):
    repo.dvc("repro", "-q")
    repo.cqia("review", "export", "human_value", "--sample", "2", "--out", "sheet")
    rows = list(read_jsonl(repo.file("sheet.jsonl")))
    accepted_id, rejected_id = rows[0]["id"], rows[1]["id"]
    rows[0]["decision"], rows[1]["decision"], rows[1]["note"] = "accept", "reject", "答非所问"
    repo.file("sheet.jsonl").write_bytes(b"".join(dumps_line(r) for r in rows))
    out = repo.cqia("review", "import", "sheet.jsonl", "--reviewer", "li.na", "--date", "2024-05-01").stdout
    assert out.startswith("Appended 2 decisions to data/reviews/human_value.jsonl (1 accept, 1 reject).")
    assert "category@human_value" in repo.dvc("status").stdout
    repo.dvc("repro", "-q")
    released = {r["id"]: r for r in read_jsonl(repo.file("data/release/human_value/train.jsonl"))}
    assert released[accepted_id]["human_verified"] is True
    assert rejected_id not in released
    lineage = {e["id"]: e for e in release_lineage(repo.file("data/release"))}
    assert lineage[accepted_id]["status"] == "released"
    assert {"step": "review", "decision": "accept", "reviewer": "li.na"}.items() <= next(
        s for s in lineage[accepted_id]["steps"] if s["step"] == "review").items()
    assert (lineage[rejected_id]["reason"], lineage[rejected_id]["detail"]) == ("review_rejected", "答非所问")


def test_export_keeps_a_sheet_with_decisions_not_imported_yet(workdir: Path):
    cqia("review", "export", "human_value")
    fill(workdir, {1: ("accept", "")})
    before = (workdir / "out/review/human_value.csv").read_bytes()
    result = cqia("review", "export", "human_value")
    assert result.exit_code == 1
    assert result.output == ("error: out/review/human_value.csv: the review sheet has 1 filled-in row (decision or "
                             "note) not imported yet. Import it first (`cqia review import out/review/human_value.csv "
                             "--reviewer NAME`), write elsewhere (--out), or overwrite it (--force)\n")
    assert (workdir / "out/review/human_value.csv").read_bytes() == before
    # once imported, exporting again is safe: the decided record is no longer pending
    assert cqia("review", "import", "out/review/human_value.csv", "--reviewer", "li.na").exit_code == 0
    again = cqia("review", "export", "human_value", "--json")
    assert again.exit_code == 0 and orjson.loads(again.output)["written"] == 2
    # an untouched sheet is simply replaced, and --force replaces a filled-in one
    assert cqia("review", "export", "human_value").exit_code == 0
    fill(workdir, {0: ("", "再看看")})
    assert cqia("review", "export", "human_value").exit_code == 1
    assert cqia("review", "export", "human_value", "--force").exit_code == 0
