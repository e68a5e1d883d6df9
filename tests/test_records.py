"""The category core: ids, mapping, review decisions and the schema gate, with no files."""

from pathlib import Path

import pytest

from cqia.formats import FORMAT_NAMES, parse_jsonl
from cqia.params import category_from_params
from cqia.errors import CqiaError
from cqia.records import Processor, Source, make_id
from cqia.review import load_decisions
from cqia.schema import RecordSchema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = RecordSchema.from_file(ROOT / "schemas/record.schema.json")
SRC = Source("data/raw/t/train.jsonl", "0" * 32)
ENTRY = {
    "format": "poison-mpts", "raw": ["train.jsonl"],
    "defaults": {"task_type": {"major": ["问答"], "minor": []}, "domain": ["人类价值观"],
                 "answer_from": "expert", "human_verified": False, "copyright": "c"},
    "rules": {"min_chars": {"output": 2}}, "normalize": {"fullwidth_ascii": True},
}


def run(lines, entry=ENTRY, decisions=None):
    cat = category_from_params("t", entry, FORMAT_NAMES)
    proc = Processor(cat, SCHEMA, decisions or {})
    items = parse_jsonl([l.encode() + b"\n" for l in lines])
    return proc, list(proc.process(SRC, items))


def test_released_record_has_domain_labels_defaults_and_lineage():
    _, [out] = run(['{"prompt": "ＡＩ会取代医生吗？", "answer": "不会完全取代。", "domain_en": "data_science", "domain_zh": "数据科学"}'])
    assert out.accepted
    assert out.record["instruction"] == "AI会取代医生吗？"
    assert out.record["domain"] == ["人类价值观", "数据科学", "data_science"]
    assert out.lineage["source"] == {"file": SRC.file, "md5": SRC.md5, "line": 1}
    norm = [s for s in out.lineage["steps"] if s["step"] == "normalize"]
    assert norm == [{"step": "normalize", "field": "instruction", "rules": ["fullwidth_ascii"],
                     "before": "ＡＩ会取代医生吗？", "after": "AI会取代医生吗？"}]


def test_id_ignores_line_position_key_order_and_cleaning():
    a = '{"prompt": "问题", "answer": "回答内容"}'
    b = '{"answer": "回答内容",   "prompt": "问题"}'
    _, first = run(["{}", a])
    _, second = run([b])
    assert first[1].id == second[0].id == make_id("t", {"prompt": "问题", "answer": "回答内容"}, "", 0)
    assert first[1].id.startswith("t-") and len(first[1].id) == 18


def test_identical_raw_records_get_distinct_ids():
    line = '{"prompt": "问题", "answer": "回答内容"}'
    _, outs = run([line, line])
    assert outs[0].id != outs[1].id


def test_same_prompt_different_answers_are_distinct_records():
    _, outs = run(['{"prompt": "问题", "answer": "回答一"}', '{"prompt": "问题", "answer": "回答二"}'])
    assert all(o.accepted for o in outs) and outs[0].id != outs[1].id


@pytest.mark.parametrize("line, reason, detail", [
    ('{"prompt": "问题"}', "missing_field", "field 'answer' is missing"),
    ('{"prompt": "问题", "answer": "\u200b "}', "empty_output", "output is empty after normalisation"),
    ('not json', "invalid_json", None),
])
def test_rejects_carry_reason_detail_and_location(line, reason, detail):
    _, [out] = run([line])
    assert not out.accepted and out.reason == reason
    assert out.lineage["reason"] == reason and out.lineage["source"]["line"] == 1
    if detail:
        assert out.lineage["detail"] == detail


def test_schema_invalid_names_the_failing_path():
    entry = dict(ENTRY, format="cqia-jsonl", defaults={})
    _, [out] = run(['{"instruction": "问", "input": "", "output": "答案在此", "task_type": "问答", "domain": ["通用"],'
                    ' "metadata": "", "answer_from": "human", "human_verified": true, "copyright": ""}'], entry)
    assert out.reason == "schema_invalid"
    assert out.lineage["detail"] == "/task_type: '问答' is not of type 'object'"


def test_empty_answer_from_is_a_schema_reject():
    entry = dict(ENTRY, format="cqia-jsonl", defaults={})
    _, [out] = run(['{"instruction": "问", "input": "", "output": "答案在此", "task_type": {"major": ["问答"], "minor": []},'
                    ' "domain": ["通用"], "metadata": "", "answer_from": "", "human_verified": true, "copyright": ""}'], entry)
    assert out.lineage["detail"].startswith("/answer_from: '' is not one of")


def test_review_accept_sets_human_verified_and_reject_drops():
    lines = ['{"prompt": "问题一", "answer": "回答一"}', '{"prompt": "问题二", "answer": "回答二"}']
    _, outs = run(lines)
    log = [f'{{"id": "{outs[0].id}", "decision": "accept", "reviewer": "li", "date": "2024-01-02"}}'.encode(),
           f'{{"id": "{outs[1].id}", "decision": "reject", "reviewer": "li", "note": "答非所问", "date": "2024-01-02"}}'.encode()]
    proc, outs = run(lines, decisions=load_decisions(log, "r.jsonl"))
    assert outs[0].accepted and outs[0].record["human_verified"] is True
    assert outs[0].lineage["steps"][-2]["step"] == "review"
    assert outs[1].reason == "review_rejected" and outs[1].lineage["detail"] == "答非所问"
    assert not proc.unused_decisions


def test_require_accept_leaves_unreviewed_records_pending():
    _, [out] = run(['{"prompt": "问题", "answer": "回答"}'], dict(ENTRY, review={"require_accept": True}))
    assert out.reason == "review_pending"


@pytest.mark.parametrize("line, message", [
    (b'{"id": "x", "decision": "maybe", "reviewer": "li", "date": "2024-01-02"}',
     "r.jsonl:1: field 'decision' is 'maybe'. Use one of ['accept', 'reject']"),
    (b'{"id": "x", "decision": "accept", "date": "2024-01-02"}',
     "r.jsonl:1: field 'reviewer' is missing or not a non-empty string"),
    (b'{"id": "x", "decision": "accept", "reviewer": "li", "date": "2 Jan"}', "r.jsonl:1: field 'date' is '2 Jan'. Use YYYY-MM-DD"),
])
def test_bad_review_lines_are_errors_with_location(line, message):
    with pytest.raises(CqiaError) as exc:
        load_decisions([line], "r.jsonl")
    assert str(exc.value).startswith(message)


@pytest.mark.parametrize("name, entry, message", [
    ("../x", ENTRY, "params.yaml: category name '../x' is not allowed"),
    ("a/b", ENTRY, "params.yaml: category name 'a/b' is not allowed"),
    ("t", dict(ENTRY, format="csv"), "params.yaml: categories.t.format: unknown format 'csv'. Available formats:"),
    ("t", dict(ENTRY, raw=["../../etc/passwd"]), "params.yaml: categories.t.raw: raw file '../../etc/passwd' must be a plain file name"),
    ("t", dict(ENTRY, colour="red"), "params.yaml: categories.t: unknown key(s) ['colour']. Available keys:"),
])
def test_bad_params_entries_are_named(name, entry, message):
    with pytest.raises(CqiaError) as exc:
        category_from_params(name, entry, FORMAT_NAMES)
    assert str(exc.value).startswith(message)


# --- cleaning steps in the lineage ------------------------------------------------------

CLEAN = dict(ENTRY, rules={"min_chars": {"output": 2}, "max_invisible_chars": 3, "mojibake": True,
                           "pii": {"email": "mask", "phone": "mask", "id_card": "reject"}},
             normalize={"fullwidth_ascii": True, "traditional_to_simplified": "t2s"})


def test_every_transform_is_a_lineage_step_in_order():
    _, [out] = run(['{"prompt": "請問ＡＩ會取代醫生嗎？", "answer": "不會。有問題請寫信到 ai@example.cn 或致電１３８１２３４５６７８"}'], CLEAN)
    assert out.accepted
    assert out.record["instruction"] == "请问AI会取代医生吗？"
    assert out.record["output"] == "不会。有问题请写信到 [EMAIL] 或致电[PHONE]"
    steps = [(s["step"], s["field"], s["rules"]) for s in out.lineage["steps"] if "field" in s]
    assert steps == [("normalize", "instruction", ["opencc_t2s", "fullwidth_ascii"]),
                     ("normalize", "output", ["opencc_t2s", "fullwidth_ascii"]),
                     ("mask", "output", ["email", "phone"])]
    mask = out.lineage["steps"][4]
    assert mask["before"] == "不会。有问题请写信到 ai@example.cn 或致电13812345678"


@pytest.mark.parametrize("line, reason, detail", [
    ('{"prompt": "问\\u0000题\\u0001三\\u0002四\\u0003", "answer": "回答"}', "invisible_chars",
     "instruction has 4 control, zero-width or bidi characters, max_invisible_chars is 3"),
    ('{"prompt": "核对身份证", "answer": "号码是11010519491231002X"}', "pii",
     "output contains a 身份证号 at character 4 (pii.id_card is reject)"),
    ('{"prompt": "浣犲ソ", "answer": "回答"}', "mojibake",
     "instruction has UTF-8 text that was decoded as GBK: '浣犲ソ' reads '你好'"),
])
def test_cleaning_rejects_carry_reason_and_detail(line, reason, detail):
    _, [out] = run([line], CLEAN)
    assert (out.reason, out.lineage["detail"]) == (reason, detail)
    assert out.lineage["steps"][-1] == {"step": "rules", "result": "reject", "reason": reason, "detail": detail}


def test_a_missing_record_key_without_a_default_is_missing_field():
    entry = dict(ENTRY, format="cqia-jsonl", defaults={"answer_from": "human"})
    _, [out] = run(['{"instruction": "问题", "output": "回答内容", "domain": ["通用"], "human_verified": false, '
                    '"copyright": ""}'], entry)
    assert (out.reason, out.lineage["detail"]) == (
        "missing_field", "field 'task_type' is missing and categories.t.defaults has no value for it")


@pytest.mark.parametrize("entry, message", [
    (dict(ENTRY, rules={"min_chars": {"output": 2}, "pii": {"phone": "drop"}}),
     "params.yaml: categories.t.rules.pii.phone: unknown action 'drop'. Use one of ['mask', 'reject', 'keep']"),
    (dict(ENTRY, normalize={"traditional_to_simplified": "t2tw"}),
     "params.yaml: categories.t.normalize.traditional_to_simplified: unknown OpenCC config 't2tw'"),
])
def test_bad_rules_and_normalize_options_fail_when_params_are_read(entry, message):
    with pytest.raises(CqiaError) as exc:
        category_from_params("t", entry, FORMAT_NAMES)
    assert str(exc.value).startswith(message)


def test_a_review_file_saved_with_a_bom_and_crlf_reads():
    log = [b'\xef\xbb\xbf{"id": "t-1", "decision": "accept", "reviewer": "li", "date": "2024-01-02"}\r\n',
           b'{"id": "t-2", "decision": "reject", "reviewer": "li", "date": "2024-01-02"}\r\n']
    assert [(d.id, d.decision, d.line) for d in load_decisions(log, "r.jsonl").values()] == [
        ("t-1", "accept", 1), ("t-2", "reject", 2)]
