"""The category core: ids, mapping, review decisions and the schema gate, with no files."""

import hashlib
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqia.common.errors import CqiaError
from cqia.gates.schema import RecordSchema
from cqia.ingest.config import checked_category, load_checked_categories, load_checked_category
from cqia.ingest.decisions import load_decisions
from cqia.ingest.formats import parse_json_array, parse_jsonl
from cqia.ingest.judge import Processor, Source, duplicate_key, make_id
from cqia.ingest.pii import LABELS, MASKS
from cqia.registry.audit import readable_steps

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
    cat = checked_category("t", entry)
    proc = Processor(cat, SCHEMA, decisions or {})
    items = parse_jsonl([l.encode() + b"\n" for l in lines])
    return proc, list(proc.process(SRC, items))


def test_released_record_has_domain_labels_defaults_and_lineage():
    _, [out] = run(['{"prompt": "ＡＩ会取代医生吗？", "answer": "不会完全取代。", "domain_en": "data_science", "domain_zh": "数据科学"}'])
    assert out.accepted
    assert out.record["instruction"] == "AI会取代医生吗？"
    assert out.record["domain"] == ["人类价值观", "数据科学", "data_science"]
    line = '{"prompt": "ＡＩ会取代医生吗？", "answer": "不会完全取代。", "domain_en": "data_science", "domain_zh": "数据科学"}'
    assert out.lineage["source"] == {"file": SRC.file, "md5": SRC.md5, "line": 1,
                                     "raw_sha256": hashlib.sha256(line.encode()).hexdigest()}
    norm = [s for s in out.lineage["steps"] if s["step"] == "normalize"]
    assert norm == [{"step": "normalize", "field": "instruction", "rules": ["fullwidth_ascii"],
                     "edits": [[0, "ＡＩ", "AI"]]}]          # stored: what changed (lineage format 2)
    norm = [s for s in readable_steps(out.lineage) if s["step"] == "normalize"]
    assert norm == [{"step": "normalize", "field": "instruction", "rules": ["fullwidth_ascii"],
                     "before": "ＡＩ会取代医生吗？", "after": "AI会取代医生吗？", "edits": [[0, "ＡＩ", "AI"]]}]


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


def test_an_occurrence_given_makes_the_id_and_is_not_counted():
    proc = Processor(checked_category("t", ENTRY), SCHEMA, {})
    [item] = parse_jsonl([b'{"prompt": "\xe9\x97\xae", "answer": "\xe7\xad\x94\xe6\xa1\x88"}\n'])
    assert proc.one(SRC, item, occurrence=3).id == make_id("t", item.raw, item.text, 3)
    assert proc.one(SRC, item).id == make_id("t", item.raw, item.text, 0)
    assert proc.next_occurrence(duplicate_key(item.raw, item.text)) == 1


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
    ("t", dict(ENTRY, license="Apache 2.0"),
     "params.yaml: categories.t.license: licence 'Apache 2.0' is not a Hugging Face licence id. Use one such as "
     "apache-2.0 or cc-by-nc-4.0 (lower case), or `other` with license_terms, or `unknown`"),
    ("t", dict(ENTRY, license="other"),
     "params.yaml: categories.t.license_terms: license is `other` but license_terms is missing. Say what the terms "
     "are"),
    ("t", dict(ENTRY, license="mit", license_terms="x"),
     "params.yaml: categories.t.license_terms: license_terms is only for license `other`, and the licence is 'mit'. "
     "Remove license_terms, or set license: other"),
    ("t", dict(ENTRY, license="cc-by-nc-4.0", defaults={"copyright": "100PoisonMpts, Apache-2.0"}),
     "params.yaml: categories.t.license: license is 'cc-by-nc-4.0' but the default copyright '100PoisonMpts, "
     "Apache-2.0' does not name it. Make them agree: correct the licence, or name it in defaults.copyright"),
    ("t", dict(ENTRY, source_dataset=["BAAI/COIG"]),
     "params.yaml: categories.t.source_dataset: source_dataset ['BAAI/COIG'] must be a string"),
])
def test_bad_params_entries_are_named(name, entry, message):
    with pytest.raises(CqiaError) as exc:
        checked_category(name, entry)
    assert str(exc.value).startswith(message)


def test_a_category_states_its_licence_and_source_dataset():
    cat = checked_category("t", dict(ENTRY, license="apache-2.0", source_dataset="BAAI/COIG",
                                     defaults={"copyright": "BAAI/COIG, Apache-2.0"}))
    assert (cat.license, cat.license_terms, cat.source_dataset) == ("apache-2.0", "", "BAAI/COIG")
    other = checked_category("t", dict(ENTRY, license="other", license_terms=" 仅供研究使用 "))
    assert (other.license, other.license_terms) == ("other", "仅供研究使用")
    assert checked_category("t", ENTRY).license == "unknown"        # not stated: the Hub's id


# --- cleaning steps in the lineage ------------------------------------------------------

CLEAN = dict(ENTRY, rules={"min_chars": {"output": 2}, "max_invisible_ratio": 0.3, "mojibake": True,
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
    mask = readable_steps(out.lineage)[4]
    assert mask["before"] == mask["after"] == "不会。有问题请写信到 [EMAIL] 或致电[PHONE]"    # lineage is redacted
    assert out.lineage["steps"][4]["edits"] == []
    assert out.lineage["redacted"] == ["email", "phone"]


@pytest.mark.parametrize("line, reason, detail", [
    ('{"prompt": "问\\u0000题\\u0001三\\u0002四\\u0003", "answer": "回答"}', "invisible_chars",
     "instruction: 4 of its 8 characters (50%) are control, zero-width or bidi characters, max_invisible_ratio is 0.3"),
    ('{"prompt": "核对身份证", "answer": "号码是11010519491231002X"}', "pii",
     "output contains a 身份证号 at character 4 (pii.id_card is reject)"),
    ('{"prompt": "浣犲ソ", "answer": "回答"}', "mojibake",
     "instruction has UTF-8 text that was decoded as GBK: '浣犲ソ' reads '你好'"),
    # 請問電腦 garbled: read after t2s (璜嫔晱板昏叇) it was neither quoted as it came nor found at all
    ('{"prompt": "璜嬪晱闆昏叇", "answer": "回答"}', "mojibake",
     "instruction has UTF-8 text that was decoded as GBK: '璜嬪晱闆昏叇' reads '請問電腦'"),
])
def test_cleaning_rejects_carry_reason_and_detail(line, reason, detail):
    _, [out] = run([line], CLEAN)
    assert (out.reason, out.lineage["detail"]) == (reason, detail)
    assert out.lineage["steps"][-1] == {"step": "rules", "result": "reject", "reason": reason, "detail": detail}


def test_invisible_characters_are_removed_with_a_normalize_step():
    """Zero-width spaces from scraping (one after every word) are stripped, and the lineage says so."""
    text = "维基百科\u200b是\u200b一个\u200b自由\u200b内容\u200b的\u200b网络\u200b百科全书\u200b。"
    _, [out] = run([orjson.dumps({"prompt": "什麼是維基百科？", "answer": text}).decode()], CLEAN)
    assert out.accepted and out.record["output"] == "维基百科是一个自由内容的网络百科全书。"
    [step] = [s for s in out.lineage["steps"] if s.get("field") == "output"]
    assert (step["step"], step["rules"]) == ("normalize", ["zero_width"])
    assert [(removed, inserted) for _, removed, inserted in step["edits"]] == [("\u200b", "")] * text.count("\u200b")


def test_a_separator_line_is_a_normalize_step_not_a_reject():
    entry = dict(CLEAN, rules=dict(CLEAN["rules"], max_char_repeats=10),
                 normalize=dict(CLEAN["normalize"], separator_lines="collapse", cjk_spaces=True))
    post = "第一道：番茄炒蛋\n🌸🌸🌸🌸🌸🌸🌸🌸🌸🌸🌸🌸\n第二道：蒜蓉西蘭花"
    _, [out] = run([orjson.dumps({"prompt": "推薦 兩道 家常菜", "answer": post}).decode()], entry)
    assert out.accepted and out.record["output"] == "第一道：番茄炒蛋\n🌸🌸🌸\n第二道：蒜蓉西兰花"
    assert out.record["instruction"] == "推荐两道家常菜"
    steps = [(s["field"], s["rules"]) for s in out.lineage["steps"] if s["step"] == "normalize"]
    assert steps == [("instruction", ["opencc_t2s", "cjk_spaces"]), ("output", ["opencc_t2s", "separator_lines_collapse"])]
    without = dict(entry, normalize=CLEAN["normalize"])
    _, [out] = run([orjson.dumps({"prompt": "推荐两道家常菜", "answer": post}).decode()], without)
    assert out.reason == "repeated_chars"


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
        checked_category("t", entry)
    assert str(exc.value).startswith(message)


# --- rule_defaults: the thresholds a category's rules override --------------------------------

DEFAULT_RULES = {"min_chars": {"instruction": 4, "output": 20}, "mojibake": True, "max_char_repeats": 10,
                 "task_types": {"代码": {"min_cjk_ratio": {"output": 0}}}}


def test_a_categorys_rules_deep_merge_over_rule_defaults():
    params = {"rule_defaults": DEFAULT_RULES, "categories": {
        "t": dict(ENTRY, rules={"min_chars": {"output": 2}, "max_char_repeats": None,
                                "task_types": {"选择题": {"min_chars": {"output": 1}}}}),
        "u": dict(ENTRY, rules=None)}}
    t, u = load_checked_categories(params)
    assert t.rules == {"min_chars": {"instruction": 4, "output": 2}, "mojibake": True, "max_char_repeats": None,
                       "task_types": {"代码": {"min_cjk_ratio": {"output": 0}}, "选择题": {"min_chars": {"output": 1}}}}
    assert u.rules == DEFAULT_RULES
    assert load_checked_category(params, "u") == u
    assert checked_category("u", params["categories"]["u"], defaults=DEFAULT_RULES) == u
    assert params["rule_defaults"] == DEFAULT_RULES                   # not changed in place


@pytest.mark.parametrize("defaults, message", [
    ({"min_char": 3}, "params.yaml: rule_defaults: unknown key(s) ['min_char']. Available keys: ['min_chars', "),
    ({"max_line_repeats": 3}, "params.yaml: rule_defaults: max_line_repeats was replaced by max_dup_line_frac, "
                              "max_dup_line_char_frac and dup_line_min_chars (docs/rules.md). Available keys: ["),
    ([3], "params.yaml: rule_defaults: must be a mapping of rule knobs. e.g. rule_defaults: {mojibake: true, "),
])
def test_bad_rule_defaults_are_named_where_they_are(defaults, message):
    with pytest.raises(CqiaError) as exc:
        load_checked_categories({"rule_defaults": defaults, "categories": {"t": ENTRY}})
    assert str(exc.value).startswith(message)


def test_the_category_stage_reruns_when_rule_defaults_change():
    from cqia.common.params import load_yaml

    dvc = load_yaml(ROOT / "dvc.yaml")
    assert "rule_defaults" in dvc["stages"]["category"]["do"]["params"]
    assert "rule_defaults" in load_yaml(ROOT / "params.yaml")


def test_a_review_file_saved_with_a_bom_and_crlf_reads():
    log = [b'\xef\xbb\xbf{"id": "t-1", "decision": "accept", "reviewer": "li", "date": "2024-01-02"}\r\n',
           b'{"id": "t-2", "decision": "reject", "reviewer": "li", "date": "2024-01-02"}\r\n']
    assert [(d.id, d.decision, d.line) for d in load_decisions(log, "r.jsonl").values()] == [
        ("t-1", "accept", 1), ("t-2", "reject", 2)]


# --- PII does not survive in lineage ---------------------------------------------------------

PII = dict(CLEAN, rules=dict(CLEAN["rules"], pii={"email": "mask", "phone": "mask", "id_card": "reject", "qq": "mask"}))
KEEP = dict(CLEAN, rules=dict(CLEAN["rules"], pii={"email": "keep", "phone": "keep", "id_card": "keep", "qq": "keep"}))


def poison_line(prompt, answer):
    return orjson.dumps({"prompt": prompt, "answer": answer}).decode()


def assert_no_pii(lineage, secrets):
    data = orjson.dumps(lineage)
    for secret in secrets:
        assert secret.encode() not in data, secret


@pytest.mark.parametrize("prompt, answer, secrets, kinds", [
    ("怎么联系你？", "发邮件到 zhang.san@example.com，或打 13812345678，QQ号：123456789",        # simplified
     ["zhang.san@example.com", "13812345678", "123456789"], ["email", "phone", "qq"]),
    ("怎麼聯繫你？", "請寄信至 li_si@example.com.tw，致電 138-1234-5678，QQ號碼：987654321",      # traditional
     ["li_si@example.com.tw", "138-1234-5678", "1234-5678", "987654321"], ["email", "phone", "qq"]),
    ("ＡＩ客服电话多少？", "电话１３８１２３４５６７８，ＱＱ：１２３４５６７８９，邮箱ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ",  # full-width
     ["１３８１２３４５６７８", "13812345678", "１２３４５６７８９", "123456789", "ｗａｎｇ＠ｅｘａｍｐｌｅ",
      "wang＠example"], ["email", "phone", "qq"]),
    ("How to reach 客服？", "Mail wang_wu@qq.com or call +86 139 8765 4321 (座机 010-12345678), 扣扣 54321",  # mixed
     ["wang_wu@qq.com", "139 8765 4321", "010-12345678", "54321"], ["email", "phone", "qq"]),
    ("电话是多少？", "拨打138\u200b1234\u200b5678即可",                                     # hidden inside a number
     ["1234\u200b5678", "12345678"], ["phone"]),
])
def test_masked_pii_is_redacted_everywhere_in_lineage(prompt, answer, secrets, kinds):
    line = poison_line(prompt, answer)
    _, [out] = run([line], PII)
    assert out.accepted and "[PHONE]" in out.record["output"]
    assert_no_pii(out.record, secrets)                              # the record and its lineage alike
    assert_no_pii(out.lineage, secrets)
    assert out.lineage["redacted"] == kinds
    assert list(out.lineage)[list(out.lineage).index("raw") + 1] == "redacted"
    assert out.lineage["raw"]["answer"].count("[") == len(kinds) + ("010-" in answer)
    assert out.lineage["source"]["raw_sha256"] == hashlib.sha256(line.encode()).hexdigest()   # the verbatim line


@pytest.mark.parametrize("answer, secret", [
    ("身份证号11010519491231002X，请核对", "11010519491231002X"),
    ("身分證號碼：１１０１０５１９４９１２３１００２Ｘ", "１１０１０５１９４９１２３１００２Ｘ"),      # traditional, full-width
    ("ID card: 11010519491231002x, mail a@b.cn", "11010519491231002x"),
])
def test_a_record_rejected_for_pii_has_redacted_lineage(answer, secret):
    line = poison_line("核对身份证", answer)
    _, [out] = run([line], PII)
    assert out.reason == "pii" and out.lineage["detail"].startswith("output contains a 身份证号 at character")
    assert_no_pii(out.lineage, [secret, secret.upper(), "11010519491231002X", "a@b.cn"])
    assert "[ID_CARD]" in out.lineage["raw"]["answer"] and "id_card" in out.lineage["redacted"]
    assert out.lineage["source"]["raw_sha256"] == hashlib.sha256(line.encode()).hexdigest()


def test_rejects_by_other_rules_and_unparsed_lines_are_redacted_too():
    lines = ['{"prompt": "问\\u0000题\\u0001三\\u0002四\\u0003", "answer": "电话13812345678"}',   # invisible_chars
             '{"prompt": "电话", "answer": "13812345678", "oops"}',                                   # invalid_json
             poison_line("电话", "好")]                                                                  # too_short: no PII
    _, outs = run(lines, PII)
    assert [o.reason for o in outs] == ["invisible_chars", "invalid_json", "too_short"]
    for out in outs[:2]:
        assert_no_pii(out.lineage, ["13812345678"])
        assert out.lineage["redacted"] == ["phone"]
    assert outs[1].lineage["raw"] == '{"prompt": "电话", "answer": "[PHONE]", "oops"}'
    assert "redacted" not in outs[2].lineage


def test_review_notes_and_rejects_quoting_text_are_redacted():
    line = poison_line("问题", "回答内容")
    _, [first] = run([line], PII)
    log = [orjson.dumps({"id": first.id, "decision": "reject", "reviewer": "li", "date": "2024-01-02",
                         "note": "答案里有作者电话 13812345678"})]
    _, [out] = run([line], PII, decisions=load_decisions(log, "r.jsonl"))
    assert out.reason == "review_rejected"
    assert_no_pii(out.lineage, ["13812345678"])
    assert out.lineage["detail"] == "答案里有作者电话 [PHONE]"


def test_array_records_hash_the_element_verbatim():
    element = '{\n    "instruction": "联系方式？", "input": "",\n    "output": "电话 13812345678"\n  }'
    data = f"\ufeff[\n  {element}\n]\n".encode()
    entry = dict(ENTRY, format="coig-human-value", raw=["a.json"], rules=PII["rules"])
    cat = checked_category("t", entry)
    [out] = Processor(cat, SCHEMA, {}).process(SRC, parse_json_array(data))
    assert out.lineage["source"]["index"] == 1
    assert out.lineage["source"]["raw_sha256"] == hashlib.sha256(element.encode()).hexdigest()
    assert out.lineage["raw"]["output"] == "电话 [PHONE]"
    assert_no_pii(out.lineage, ["13812345678"])


def test_a_phone_number_written_as_a_json_number_is_redacted():
    entry = dict(PII, format="cqia-jsonl", defaults={})
    line = ('{"instruction": "客服电话？", "input": "", "output": "见元数据里的号码", "task_type": {"major": ["问答"], '
            '"minor": []}, "domain": ["通用"], "metadata": "", "answer_from": "human", "human_verified": false, '
            '"copyright": "", "phone": 13812345678, "upvotes": 1532}')
    _, [out] = run([line], entry)
    assert out.lineage["raw"]["phone"] == "[PHONE]" and out.lineage["raw"]["upvotes"] == 1532
    assert out.lineage["redacted"] == ["phone"]
    assert_no_pii(out.lineage, ["13812345678"])


def test_redaction_leaves_the_raw_objects_alone():
    line = poison_line("电话？", "13812345678")
    items = list(parse_jsonl([line.encode() + b"\n"]))
    cat = checked_category("t", PII)
    [out] = Processor(cat, SCHEMA, {}).process(SRC, items)
    assert items[0].raw["answer"] == "13812345678" and out.lineage["raw"]["answer"] == "[PHONE]"


def test_a_category_that_keeps_pii_keeps_its_raw_verbatim():
    line = poison_line("怎么联系你？", "发邮件到 zhang.san@example.com，或打１３８１２３４５６７８")
    _, [out] = run([line], KEEP)
    assert out.accepted and out.record["output"] == "发邮件到 zhang.san@example.com，或打13812345678"
    assert out.lineage["raw"] == orjson.loads(line)
    assert "redacted" not in out.lineage
    assert out.lineage["source"]["raw_sha256"] == hashlib.sha256(line.encode()).hexdigest()


# --- the released record reads PII as its lineage does ---------------------------------------
# Whatever the category's normalize options: ＠ and ． are never made ASCII, and a category
# without fullwidth_ascii (human_value) keeps full-width digits and U+3000.

WIDE_AND_T2S = {"fullwidth_ascii": True, "traditional_to_simplified": "t2s"}
T2S_ONLY = {"traditional_to_simplified": "t2s"}


def pii_entry(normalize, action):
    return dict(ENTRY, rules={"min_chars": {"output": 2}, "pii": {kind: action for kind in PII_KINDS}},
                normalize=normalize)


PII_KINDS = ("email", "phone", "id_card", "qq")
# (the PII as the raw answer writes it, the record's text for it with and without fullwidth_ascii,
# the forms of it that must not be in the released record)
HIDDEN_PII = [
    ("ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "[EMAIL]", "[EMAIL]", ["ｗａｎｇ", "wang", "ｅｘａｍｐｌｅ", "example"]),
    ("wang＠example．com", "[EMAIL]", "[EMAIL]", ["wang", "example"]),
    ("１３８１２３４５６７８", "[PHONE]", "[PHONE]", ["１３８１２３４", "1381234", "５６７８", "5678"]),
    ("１３８\u3000１２３４\u3000５６７８", "[PHONE]", "[PHONE]", ["１３８", "138", "５６７８", "5678"]),
    ("１３８\u200b１２３４\u200b５６７８", "[PHONE]", "[PHONE]", ["１３８", "138", "５６７８", "5678"]),
    ("138\u202a1234\u202c5678", "[PHONE]", "[PHONE]", ["138", "5678"]),          # bidi: normalisation keeps them
    ("１１０１０５１９４９１２３１００２Ｘ", "[ID_CARD]", "[ID_CARD]", ["１１０１０５", "110105", "００２Ｘ", "002X"]),
    ("QQ：１２３４５６７８９", "QQ：[QQ]", "QQ：[QQ]", ["１２３４５", "12345", "６７８９", "6789"]),
    ("ＱＱ号码：１２３４５６７８９", "ＱＱ号码：[QQ]", "QQ号码：[QQ]", ["１２３４５", "12345", "６７８９", "6789"]),
    ("ＱＱ號碼 ９８７６５４３２１", "ＱＱ号码 [QQ]", "QQ号码 [QQ]", ["９８７６５", "98765", "４３２１", "4321"]),
]
AROUND = ("ＡＩ客服說：", "，工作時間９點到５點。")                        # traditional, full-width, CJK punctuation


@pytest.mark.parametrize("normalize", [WIDE_AND_T2S, T2S_ONLY], ids=["fullwidth_ascii", "no_fullwidth_ascii"])
@pytest.mark.parametrize("pii, masked_wide, masked_narrow, forms", HIDDEN_PII)
def test_the_released_record_has_the_mask_token_and_no_form_of_the_pii(normalize, pii, masked_wide, masked_narrow,
                                                                        forms):
    _, [out] = run([poison_line("客服怎么联系？", AROUND[0] + pii + AROUND[1])], pii_entry(normalize, "mask"))
    assert out.accepted
    if normalize.get("fullwidth_ascii"):
        assert out.record["output"] == f"AI客服说：{masked_narrow}，工作时间9点到5点。"
    else:                                                       # the text around the PII as it was
        assert out.record["output"] == f"ＡＩ客服说：{masked_wide}，工作时间９点到５点。"
    assert_no_pii(out.record, forms)
    assert_no_pii(out.lineage, forms)
    [mask] = [s for s in readable_steps(out.lineage) if s["step"] == "mask"]
    assert mask["field"] == "output" and mask["after"] == out.record["output"]


@pytest.mark.parametrize("normalize", [WIDE_AND_T2S, T2S_ONLY], ids=["fullwidth_ascii", "no_fullwidth_ascii"])
@pytest.mark.parametrize("pii, kind, at", [
    ("ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email", 7), ("wang＠example．com", "email", 7),
    ("１３８\u3000１２３４\u3000５６７８", "phone", 7), ("１３８\u200b１２３４\u200b５６７８", "phone", 7),
    ("138\u202a1234\u202c5678", "phone", 7),
    ("１１０１０５１９４９１２３１００２Ｘ", "id_card", 7), ("ＱＱ号码：１２３４５６７８９", "qq", 12),
])
def test_pii_in_any_width_is_rejected_with_the_reason_code(normalize, pii, kind, at):
    _, [out] = run([poison_line("客服怎么联系？", AROUND[0] + pii + AROUND[1])], pii_entry(normalize, "reject"))
    assert out.reason == "pii" and out.record is None
    assert out.lineage["detail"] == f"output contains {LABELS[kind]} at character {at} (pii.{kind} is reject)"
    assert MASKS[kind] in out.lineage["raw"]["answer"] and out.lineage["redacted"] == [kind]


@pytest.mark.parametrize("normalize", [WIDE_AND_T2S, T2S_ONLY], ids=["fullwidth_ascii", "no_fullwidth_ascii"])
def test_pii_the_category_keeps_is_released_as_normalised(normalize):
    pii = "wang＠example．com，１３８\u3000１２３４\u3000５６７８，ＱＱ号码：１２３４５６７８９"
    line = poison_line("客服怎么联系？", AROUND[0] + pii + AROUND[1])
    _, [out] = run([line], pii_entry(normalize, "keep"))
    expected = ("AI客服说：wang＠example．com，138 1234 5678，QQ号码：123456789，工作时间9点到5点。"
                if normalize.get("fullwidth_ascii") else f"ＡＩ客服说：{pii}，工作时间９点到５点。")
    assert out.accepted and out.record["output"] == expected
    assert not [s for s in out.lineage["steps"] if s["step"] == "mask"] and "redacted" not in out.lineage


DEDUP_PASS = {"step": "dedup", "result": "pass"}
DEDUP_DROP = {"step": "dedup", "result": "reject", "reason": "duplicate_of:t-0000000000000001",
              "duplicate_of": "t-0000000000000001"}


def spliced_equals_serialised(lineage: dict) -> None:
    """publish's splice (cqia.common.lineage.final_line) gives the bytes of the lineage changed and serialised."""
    from cqia.common.fileio import dumps_line
    from cqia.common.lineage import final_line

    line = dumps_line(lineage)
    released = dict(lineage, status="released", steps=[*lineage["steps"], DEDUP_PASS])
    assert final_line(line, lineage["id"], "released", DEDUP_PASS) == dumps_line(released)
    tail = {"reason": DEDUP_DROP["reason"], "detail": "same instruction, input and output as t-0000000000000001"}
    dropped = dict(lineage, status="rejected", steps=[*lineage["steps"], DEDUP_DROP], **tail)
    assert final_line(line, lineage["id"], "rejected", DEDUP_DROP, tail) == dumps_line(dropped)


def test_the_lineage_splice_gives_the_serialised_bytes():
    lines = ['{"prompt": "ＡＩ会取代医生吗？", "answer": "不会完全取代。", "domain_en": "ai", "domain_zh": "人工智能"}',
             '{"prompt": "怎么联系你们？", "answer": "发邮件到 wang@example.com 或打 13812345678。", "domain_en": "x", "domain_zh": "客服"}',
             '{"prompt": "引号\\"和\\\\反斜杠]}", "answer": "结尾是 ]} 也没关系\\n", "domain_en": "x", "domain_zh": "测试"}']
    entry = dict(ENTRY, rules={"pii": {"email": "mask", "phone": "mask"}})
    _, outs = run(lines, entry)
    assert [o.accepted for o in outs] == [True, True, True]
    assert "redacted" in outs[1].lineage
    for out in outs:
        spliced_equals_serialised(out.lineage)


@given(st.text(min_size=2, max_size=40), st.text(min_size=2, max_size=40))
def test_the_lineage_splice_gives_the_serialised_bytes_for_any_text(prompt, answer):
    _, [out] = run([orjson.dumps({"prompt": prompt, "answer": answer, "domain_en": "x", "domain_zh": "y"}).decode()],
                   dict(ENTRY, rules={}))
    if out.accepted:
        spliced_equals_serialised(out.lineage)


def test_the_lineage_splice_refuses_a_line_of_another_record_or_status():
    from cqia.common.fileio import dumps_line
    from cqia.common.lineage import final_line

    _, [out] = run(['{"prompt": "问题是什么？", "answer": "回答在这里。", "domain_en": "x", "domain_zh": "y"}'])
    line = dumps_line(out.lineage)
    assert final_line(line, "t-0000000000000000", "released", DEDUP_PASS) is None
    assert final_line(line.replace(b'"accepted"', b'"rejected"', 1), out.id, "released", DEDUP_PASS) is None
    assert final_line(line.rstrip(b"\n"), out.id, "released", DEDUP_PASS) is None


def test_the_parquet_schema_is_derived_from_the_record_schema():
    import pyarrow as pa

    from cqia.publish.card import parquet_schema

    strings = pa.list_(pa.string())
    assert parquet_schema(SCHEMA.schema) == pa.schema([
        ("id", pa.string()), ("instruction", pa.string()), ("input", pa.string()), ("output", pa.string()),
        ("task_type", pa.struct([("major", strings), ("minor", strings)])), ("domain", strings),
        ("metadata", pa.string()), ("answer_from", pa.string()), ("human_verified", pa.bool_()),
        ("copyright", pa.string())])
    extended = {"properties": {**SCHEMA.schema["properties"], "score": {"type": "number"},
                               "tags": {"type": "array", "items": {"type": "integer"}}}}
    assert parquet_schema(extended).field("score").type == pa.float64()
    assert parquet_schema(extended).field("tags").type == pa.list_(pa.int64())
