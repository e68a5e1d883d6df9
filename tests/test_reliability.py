"""Bad raw input never crashes the category stage or loses a record.

Every file of tests/bad_inputs/ goes through the real stage entry
(`stages.category.main`, in process, no dvc): it ends in rejects with a reason
code and a line, or in a one-line stage failure that names the file, the line
and the fix, with nothing written. On every run that writes, the accounting
gate holds: the raw records counted in the file = accepted + rejected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqia.common.errors import CqiaError
from cqia.common.fileio import read_jsonl
from stages.category import main
from tests.conftest import lineage_errors

pytestmark = pytest.mark.process  # the real stage entry, with its Great Expectations gate

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "bad_inputs"
RULES = {"min_chars": {"instruction": 2, "output": 10}, "max_chars": {"instruction": 2000, "output": 8000},
         "max_invisible_ratio": 0.5, "mojibake": True}
DEFAULTS = {"task_type": {"major": ["问答"], "minor": []}, "domain": ["测试"], "answer_from": "expert",
            "human_verified": False, "copyright": "test"}
ENTRIES = {
    "poison-mpts": {"format": "poison-mpts", "defaults": DEFAULTS},
    "cqia-jsonl": {"format": "cqia-jsonl", "defaults": {}},
    "coig-human-value": {"format": "coig-human-value", "defaults": DEFAULTS},
}


class Run:
    def __init__(self, out: Path):
        self.metrics = json.loads((out / "metrics.json").read_text())
        self.accepted = [{"record": record, "lineage": lineage} for record, lineage in
                         zip(read_jsonl(out / "accepted.jsonl.zst"), read_jsonl(out / "lineage.jsonl.zst"), strict=True)]
        self.rejects = [orjson.loads(line) for line in (out / "rejects.jsonl").read_bytes().splitlines()]
        for entry in [a["lineage"] for a in self.accepted] + self.rejects:  # every outcome's lineage has its shape
            assert not lineage_errors(entry), (entry["source"], lineage_errors(entry))

    def rejected(self) -> list[tuple[int, str, str]]:
        return [(r["source"]["line"], r["reason"], r["detail"]) for r in self.rejects]

    def steps(self, line: int, step: str = "normalize") -> list[tuple[str, list[str]]]:
        [rec] = [a for a in self.accepted if a["lineage"]["source"]["line"] == line]
        return [(s["field"], s["rules"]) for s in rec["lineage"]["steps"] if s["step"] == step]


class Stage:
    """One category `t` in a temporary directory, run by the real stage entry."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.raw = tmp / "raw" / "t"
        self.raw.mkdir(parents=True)
        self.out = tmp / "stages" / "t"
        self.params = tmp / "params.yaml"
        self.reviews = tmp / "reviews.jsonl"
        self.reviews.write_bytes(b"")

    def args(self, category: str = "t") -> list[str]:
        return ["--category", category, "--params", str(self.params), "--raw-dir", str(self.raw),
                "--reviews", str(self.reviews), "--schema", str(ROOT / "schemas/record.schema.json"),
                "--suite", str(ROOT / "expectations/default.json"),
                "--accepted", str(self.out / "accepted.jsonl.zst"), "--lineage", str(self.out / "lineage.jsonl.zst"),
                "--rejects", str(self.out / "rejects.jsonl"),
                "--keys", str(self.out / "keys.parquet"), "--metrics", str(self.out / "metrics.json")]

    def write(self, files: dict[str, bytes], fmt: str = "poison-mpts", name: str = "t", **entry) -> None:
        for file, data in files.items():
            (self.raw / file).write_bytes(data)
        entry = {**ENTRIES[fmt], "raw": list(files), "suite": "default", "rules": RULES, **entry}
        self.params.write_text(json.dumps({"categories": {name: entry}}, ensure_ascii=False), encoding="utf-8")

    def run(self, files: dict[str, bytes], fmt: str = "poison-mpts", **entry) -> Run:
        self.write(files, fmt, **entry)
        assert main(self.args()) == 0
        run = Run(self.out)
        # the accounting gate, checked again here: every raw record is accepted or rejected
        counted = sum(len([l for l in data.removeprefix(b"\xef\xbb\xbf").split(b"\n") if l.strip()])
                      for data in files.values())
        m = run.metrics
        assert m["raw"] == counted == m["accepted"] + m["rejected"] == len(run.accepted) + len(run.rejects)
        assert m["gates"]["accounting"]["success"] is True
        return run

    def fails(self, files: dict[str, bytes], fmt: str = "poison-mpts", category: str = "t", **entry) -> str:
        self.write(files, fmt, **entry)
        with pytest.raises(CqiaError) as exc:
            main(self.args(category))
        # nothing written, no temporaries left behind
        assert not self.out.exists() or sorted(p.name for p in self.out.iterdir()) == []
        return str(exc.value)


@pytest.fixture
def stage(tmp_path: Path) -> Stage:
    return Stage(tmp_path)


def bad(name: str) -> dict[str, bytes]:
    return {name: (BAD / name).read_bytes()}


# --- cases that end in rejects ------------------------------------------------------

@pytest.mark.parametrize("name, fmt, rejected", [
    ("malformed_json.jsonl", "poison-mpts",
     [(2, "invalid_json", "unexpected character, expected a string key at column 21")]),
    ("not_an_object.jsonl", "poison-mpts",
     [(2, "not_an_object", "a JSON array where an object is expected"),
      (3, "not_an_object", "a JSON string where an object is expected"),
      (4, "not_an_object", "a JSON number where an object is expected"),
      (5, "not_an_object", "a JSON null where an object is expected")]),
    ("invalid_utf8_line.jsonl", "poison-mpts", [(2, "invalid_utf8", "byte 13: invalid start byte")]),
    ("mojibake.jsonl", "poison-mpts",
     [(2, "mojibake", "instruction has UTF-8 text that was decoded as GBK: '浣犲ソ锛屼粙缁嶄竴涓嬩綘' reads '你好，介绍一下你'"),
      (3, "mojibake", "output has U+FFFD (the replacement character) at character 11: it was decoded with the "
                      "wrong encoding upstream")]),
    ("control_chars.jsonl", "poison-mpts",
     [(1, "invalid_json", "unexpected control character in string at column 14"),
      (4, "invisible_chars", "output: 20 of its 26 characters (77%) are control, zero-width or bidi characters, "
                             "max_invisible_ratio is 0.5")]),
    ("zero_width.jsonl", "poison-mpts",
     [(3, "invisible_chars", "output: 20 of its 24 characters (83%) are control, zero-width or bidi characters, "
                             "max_invisible_ratio is 0.5")]),
    ("missing_fields.jsonl", "cqia-jsonl",
     [(1, "missing_field", "field 'output' is missing"),
      (2, "missing_field", "field 'task_type' is missing and categories.t.defaults has no value for it")]),
    ("wrong_types.jsonl", "cqia-jsonl",
     [(1, "schema_invalid", "/task_type: '问答' is not of type 'object'"),
      (2, "schema_invalid", "/domain: '职场' is not of type 'array'"),
      (3, "schema_invalid", "/human_verified: 'true' is not of type 'boolean'")]),
    ("answer_from.jsonl", "cqia-jsonl",
     [(1, "schema_invalid", "/answer_from: '' is not one of ['human', 'llm', 'expert']"),
      (2, "schema_invalid", "/answer_from: 'crowd' is not one of ['human', 'llm', 'expert']")]),
])
def test_bad_records_are_rejects_with_reason_and_line(stage, name, fmt, rejected):
    run = stage.run(bad(name), fmt)
    assert run.rejected() == rejected
    for reject in run.rejects:
        assert reject["source"]["file"].endswith(f"raw/t/{name}")
        assert reject["raw"]                         # the raw record (or line) verbatim


def test_normalised_characters_are_in_the_lineage(stage):
    run = stage.run(bad("control_chars.jsonl"))
    assert run.steps(2) == [("instruction", ["control"]), ("output", ["control"])]
    assert run.steps(3) == [("output", ["control"])]        # 12 of 39 characters: removed, not a reject
    assert [(a["record"]["instruction"], a["record"]["output"]) for a in run.accepted] == [
        ("怎样学习？", "每天坚持练习，循序渐进，不要急于求成。"), ("怎样学习？", "坚持" * 12 + "练习。")]
    run = Stage(stage.tmp / "zw").run(bad("zero_width.jsonl"))
    assert run.steps(1) == [("instruction", ["zero_width"]), ("output", ["zero_width"])]
    assert run.steps(2) == [("output", ["zero_width"])]     # a zero-width space after every character
    assert run.accepted[1]["record"]["output"] == "深度学习是机器学习的分支。"


def test_bom_crlf_and_u2028_are_read_correctly(stage):
    run = stage.run(bad("bom.jsonl"))
    assert [a["record"]["instruction"] for a in run.accepted] == ["自闭症能治好吗？", "孩子说谎怎么办？"]
    run = Stage(stage.tmp / "crlf").run(bad("crlf.jsonl"))
    assert run.steps(2) == [("output", ["newlines"])]
    assert run.accepted[1]["record"]["output"] == "第一段说明应聘岗位。\n第二段讲你的经历。\n第三段表达期待。"
    run = Stage(stage.tmp / "u2028").run(bad("u2028.jsonl"))
    assert [a["lineage"]["source"]["line"] for a in run.accepted] == [1, 2]
    assert run.accepted[0]["record"]["instruction"] == "第一行\n第二行"
    assert run.steps(1) == [("instruction", ["newlines"]), ("output", ["newlines"])]


def test_duplicate_raw_records_get_distinct_ids(stage):
    run = stage.run(bad("duplicates.jsonl"))
    ids = [a["record"]["id"] for a in run.accepted]
    assert len(ids) == 3 and len(set(ids)) == 3       # merge later keeps the first as the release's copy


def test_a_10_mb_field_is_too_long_and_nothing_breaks(stage):
    answer = "数据" * (10 * 2**20 // 6)                    # 10 MiB of UTF-8
    line = orjson.dumps({"prompt": "很长的回答", "answer": answer}) + b"\n"
    run = stage.run({"big.jsonl": (BAD / "bom.jsonl").read_bytes() + line})
    assert run.rejected() == [(3, "too_long", f"output has {len(answer)} characters, max_chars.output is 8000")]


# --- cases that stop the stage --------------------------------------------------------

def test_a_gbk_file_stops_the_stage_with_the_iconv_command(stage):
    path = stage.raw / "gbk.jsonl"
    assert stage.fails(bad("gbk.jsonl")) == (
        f"{path}:1: the file is not UTF-8: none of its lines with non-ASCII bytes decodes as UTF-8, and they decode "
        f"as GBK/GB18030. Convert it once: `iconv -f GB18030 -t UTF-8 {path} > {path}.utf8`, then replace the file "
        "(GB18030 is a superset of GBK)")


@pytest.mark.parametrize("name, fmt, message", [
    ("truncated_last_line.jsonl", "poison-mpts",
     "{path}:3: the last line stops in the middle of a JSON value and has no final newline: the file looks "
     "truncated. Download the file again (compare its md5 with upstream's), or delete the incomplete last line"),
    ("array_for_jsonl.json", "poison-mpts",
     "{path}:1: the file is one JSON array, but this format expects JSON Lines (one object per line). Convert it "
     "to JSON Lines (e.g. `jq -c '.[]' {path} > {path}.jsonl`), or use a format that reads JSON arrays"),
    ("jsonl_for_array.json", "coig-human-value",
     "{path}:1: the first record has the keys ['input', 'instruction', 'output'], but format 'coig-human-value' "
     "reads JSON Lines records with ['textbox_question', 'textbox_answer']; it reads records with "
     "['instruction', 'output'] only from one JSON array. Make the file one JSON array "
     "(e.g. `jq -s . {path} > {path}.json`), then replace the file"),
    ("empty.jsonl", "poison-mpts",
     "{path}: the raw file is empty. Put the upstream file there, or remove it from the category's 'raw' list"),
    ("blank.jsonl", "poison-mpts",
     "{path}: the raw file is empty. Put the upstream file there, or remove it from the category's 'raw' list"),
])
def test_bad_files_stop_the_stage_naming_file_line_and_fix(stage, name, fmt, message):
    assert stage.fails(bad(name), fmt) == message.format(path=stage.raw / name)


def test_a_truncated_json_array_stops_the_stage(stage):
    data = '[{"instruction": "下列做法正确的是？", "input": "", "output": "B"},\n {"instruction": "下列'.encode()
    path = stage.raw / "part1.json"
    assert stage.fails({"part1.json": data}, "coig-human-value") == (
        f"{path}:2: element 2 is cut off and the array has no closing ']': the file looks truncated. "
        "Download the file again (compare its md5 with upstream's)")


def test_a_review_decision_for_an_unknown_id_stops_the_stage(stage):
    stage.reviews.write_bytes(b'{"id": "t-0123456789abcdef", "decision": "accept", "reviewer": "li", '
                              b'"date": "2024-01-02"}\n')
    assert stage.fails(bad("bom.jsonl")) == (
        f"{stage.reviews}:1: review decision for id 't-0123456789abcdef', which is not a record of category 't' "
        "(1 such decision(s)). Fix the id (see `cqia review export`) or remove the line")


def test_params_with_an_unknown_format_a_missing_file_or_a_path_as_name_stop_the_stage(stage):
    files = bad("bom.jsonl")
    assert stage.fails(files, format="csv").startswith(
        f"{stage.params}: categories.t.format: unknown format 'csv'. Available formats: "
        "['poison-mpts', 'coig-human-value', 'cqia-jsonl']")
    assert stage.fails(files, raw=["bom.jsonl", "nope.jsonl"]) == (
        f"{stage.raw / 'nope.jsonl'}: raw file 'nope.jsonl' listed in params is missing. Put it in {stage.raw}/ "
        "(or `dvc pull` it), or fix categories.t.raw")
    for name in ("../x", "a/b"):
        stage.write(files, name=name)
        with pytest.raises(CqiaError) as exc:
            main(stage.args(name))
        assert str(exc.value) == (f"{stage.params}: category name {name!r} is not allowed. Use lower-case "
                                  "letters, digits and '_' only (it becomes a directory name; no '/' or '..')")
    assert stage.fails(files, rules={"min_chars": {"output": -1}}) == (
        f"{stage.params}: categories.t.rules.min_chars.output: -1 is not a whole number >= 0")


def test_a_stage_failure_is_one_line_on_stderr_and_exit_1(stage):
    stage.write(bad("gbk.jsonl"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "stages.category", *stage.args()], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {stage.raw / 'gbk.jsonl'}:1: the file")
    assert "Traceback" not in proc.stderr
    assert not stage.out.exists() or not list(stage.out.iterdir())


@given(st.lists(st.text(max_size=30), max_size=20))
def test_a_zst_file_round_trips_its_lines(tmp_path_factory, texts):
    """Files named *.zst (the category stage's big outputs) are written and read compressed."""
    from cqia.common.fileio import Staging, dumps_line

    path = tmp_path_factory.mktemp("zst") / "records.jsonl.zst"
    with Staging() as staging, staging.open(path) as out:
        for text in texts:
            out.write(dumps_line({"text": text}))
    assert path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"              # the zstd frame's magic number
    assert [r["text"] for r in read_jsonl(path)] == texts


def test_a_damaged_zst_file_is_a_one_line_error_naming_it(tmp_path):
    from cqia.common.fileio import Staging, dumps_line

    path = tmp_path / "lineage.jsonl.zst"
    with Staging() as staging, staging.open(path) as out:
        for i in range(2000):
            out.write(dumps_line({"i": i, "text": f"第{i}条记录"}))
    path.write_bytes(path.read_bytes()[:-40])                          # cut: a copy that stopped early
    with pytest.raises(CqiaError) as err:
        list(read_jsonl(path))
    assert str(err.value).startswith(f"{path}: the compressed file is damaged (")
    assert str(err.value).endswith("Rebuild it: `dvc repro -f` of the stage that writes it")
