"""Format adapters on their edge cases: BOM, U+2028, arrays, exam layout, bad lines."""

import pytest

from cqia.formats import FORMATS, MissingField, parse_json_array, parse_jsonl, sniff


def lines(text: str) -> list[bytes]:
    return [l + b"\n" for l in text.encode("utf-8").split(b"\n")]


def test_jsonl_keeps_u2028_inside_a_record():
    data = '{"prompt": "第一行\u2028第二行", "answer": "好\u2029的"}\n{"prompt": "二", "answer": "答"}'
    items = list(parse_jsonl(lines(data)))
    assert [i.line for i in items] == [1, 2]
    assert items[0].raw["prompt"] == "第一行\u2028第二行"


def test_jsonl_strips_bom_and_crlf_and_skips_blank_lines():
    data = b'\xef\xbb\xbf{"a": "\xe4\xbd\xa0"}\r\n\r\n{"a": "b"}\r\n'
    items = list(parse_jsonl(data.split(b"\n")))
    assert [(i.line, i.raw) for i in items] == [(1, {"a": "你"}), (3, {"a": "b"})]


def test_jsonl_bad_lines_become_items_with_reason_codes():
    raw = [b'{"a": 1}\n', b'{"a": \n', b'[1, 2]\n', b'{"a": "\xff"}\n', b'{"a": "trunc']
    items = list(parse_jsonl(raw))
    assert [(i.line, i.reason) for i in items] == [
        (1, None), (2, "invalid_json"), (3, "not_an_object"), (4, "invalid_utf8"), (5, "invalid_json")]


def test_array_elements_keep_index_and_start_line():
    data = '\ufeff[\n  {"instruction": "甲", "output": "乙"},\n  {\n    "instruction": "丙",\n    "output": "丁"\n  }\n]\n'
    items = list(parse_json_array(data.encode("utf-8")))
    assert [(i.index, i.line, i.raw["instruction"]) for i in items] == [(1, 2, "甲"), (2, 3, "丙")]


@pytest.mark.parametrize("data, message", [
    (b'{"a": 1}', "expected a JSON array"),
    (b'[{"a": 1}, {"a": 2}', "expected ',' or ']' after element 2"),
    (b'[{"a": 1},\n {"a": }]', "line 2 column 8: element 2 is not valid JSON"),
    (b'[{"a": 1}] x', "unexpected data after the array"),
])
def test_array_file_errors_name_the_line(data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        list(parse_json_array(data))


def test_sniff_tells_array_from_jsonl():
    assert sniff(b"\xef\xbb\xbf  [\n{") == "array"
    assert sniff(b'{"a": 1}\n') == "jsonl"


def test_poison_maps_prompt_answer_and_domain_labels():
    fields = FORMATS["poison-mpts"].fields(
        {"prompt": "问", "answer": "答", "domain_en": "law", "domain_zh": "法理学"}, "jsonl")
    assert fields == {"instruction": "问", "input": "", "output": "答", "domain_extra": ["法理学", "law"]}


def test_human_value_exam_layout_joins_question_and_analysis():
    raw = {"textbox_q_instruction": "请选择最恰当的一项。", "textbox_q_context": "",
           "textbox_question": "下列做法正确的是？\nA. 甲\nB. 乙", "textbox_answer": "B",
           "textbox_answer_analysis": "乙符合要求。"}
    fields = FORMATS["coig-human-value"].fields(raw, "exam-jsonl")
    assert fields["instruction"] == "请选择最恰当的一项。\n下列做法正确的是？\nA. 甲\nB. 乙"
    assert fields["output"] == "B\n\n乙符合要求。"
    raw["textbox_answer_analysis"] = ""
    assert FORMATS["coig-human-value"].fields(raw, "exam-jsonl")["output"] == "B"


def test_missing_fields_are_named():
    with pytest.raises(MissingField) as exc:
        FORMATS["poison-mpts"].fields({"prompt": "问"}, "jsonl")
    assert exc.value.field == "answer"
    with pytest.raises(MissingField) as exc:
        FORMATS["cqia-jsonl"].fields({"output": "答"}, "jsonl")
    assert exc.value.field == "instruction"
