"""Format adapters on their edge cases: BOM, U+2028, arrays, exam layout, bad lines."""

import orjson
import pytest

from cqia.ingest.formats import (
    FORMATS,
    FileProblem,
    MissingField,
    array_item,
    check_encoding,
    check_layout,
    parse_json_array,
    parse_jsonl,
    scan_json_array,
    sniff,
)


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
    raw = [b'{"a": 1}\n', b'{"a": \n', b'[1, 2]\n', b'{"a": "\xff"}\n', b'"text"\n', b'{"a": 1,}']
    items = list(parse_jsonl(raw))
    assert [(i.line, i.reason) for i in items] == [
        (1, None), (2, "invalid_json"), (3, "not_an_object"), (4, "invalid_utf8"), (5, "not_an_object"),
        (6, "invalid_json")]
    assert [i.detail for i in items[2:5]] == ["a JSON array where an object is expected",
                                              "byte 8: invalid start byte", "a JSON string where an object is expected"]


def test_a_cut_off_last_line_is_a_file_problem():
    with pytest.raises(FileProblem) as exc:
        list(parse_jsonl([b'{"a": 1}\n', b'{"a": "trunc']))
    assert str(exc.value) == ("line 2: the last line stops in the middle of a JSON value and has no final newline: "
                              "the file looks truncated")
    # the same line in the middle of the file is that line's problem
    assert [i.reason for i in parse_jsonl([b'{"a": "trunc\n', b'{"a": 1}'])] == ["invalid_json", None]


def test_a_bom_at_the_start_of_any_line_is_dropped():
    items = list(parse_jsonl([b'\xef\xbb\xbf{"a": 1}\n', b'\xef\xbb\xbf{"a": 2}\n']))
    assert [i.raw for i in items] == [{"a": 1}, {"a": 2}]


def test_a_chunk_of_lines_keeps_the_line_numbers_of_its_file():
    items = list(parse_jsonl([b'{"a": 1}\n', b"\n", b"not json\n"], start=41))
    assert [(i.line, i.reason) for i in items] == [(41, None), (43, "invalid_json")]


def test_scanned_array_elements_become_the_items_of_parse_json_array():
    data = '[{"instruction": "甲"},\n {"a": NaN}, 3,\n {"b": [1, 2]}]'.encode()
    assert [array_item(*element) for element in scan_json_array(data)] == list(parse_json_array(data))
    assert [line for line, _, _ in scan_json_array(data)] == [1, 2, 2, 3]


def test_array_elements_obey_the_json_lines_rules():
    data = b'[{"a": "\\ud800"}, {"a": NaN}, {"a": 1}, 3]'
    items = list(parse_json_array(data))
    assert [(i.index, i.reason) for i in items] == [(1, "invalid_json"), (2, "invalid_json"), (3, None),
                                                    (4, "not_an_object")]
    assert items[0].detail.startswith("element 1: ")
    assert items[3].detail == "element 4 is a JSON number where an object is expected"


def test_array_elements_keep_index_and_start_line():
    data = '\ufeff[\n  {"instruction": "甲", "output": "乙"},\n  {\n    "instruction": "丙",\n    "output": "丁"\n  }\n]\n'
    items = list(parse_json_array(data.encode("utf-8")))
    assert [(i.index, i.line, i.raw["instruction"]) for i in items] == [(1, 2, "甲"), (2, 3, "丙")]


@pytest.mark.parametrize("data, message", [
    (b'{"a": 1}', "line 1: expected a JSON array ('[') but found '{'"),
    (b'[{"a": 1}, {"a": 2}', "line 1: the array ends after element 2 without its closing ']': "
                             "the file looks truncated"),
    (b'[{"a": 1},\n {"a": "tr', "line 2: element 2 is cut off and the array has no closing ']': "
                                "the file looks truncated"),
    (b'[{"a": 1},\n {"a": }]', "line 2: element 2 is not valid JSON at column 8 (Expecting value)"),
    (b'[{"a": 1} {"a": 2}]', "line 1: expected ',' or ']' after element 1, found '{'"),
    (b'[{"a": 1}] x', "line 1: unexpected data after the array"),
    (b'[{"a": "\xb2\xe2\xca\xd4"}]', "line 1: not valid UTF-8 (byte 9: invalid start byte)"),
])
def test_array_file_errors_name_the_line(data, message):
    with pytest.raises(FileProblem) as exc:
        list(parse_json_array(data))
    assert str(exc.value) == message


# --- encodings and layouts of whole files -------------------------------------------

def test_a_gbk_file_is_one_file_problem():
    data = '{"prompt": "你好", "answer": "您好，有什么可以帮您？"}\n'.encode("gbk") * 3
    with pytest.raises(FileProblem) as exc:
        check_encoding(data)
    assert exc.value.line == 1
    assert exc.value.message == ("the file is not UTF-8: none of its lines with non-ASCII bytes decodes as UTF-8, "
                                 "and they decode as GBK/GB18030")
    assert exc.value.fix.startswith("Convert it once: `iconv -f GB18030 -t UTF-8 {file} > {file}.utf8`")


def test_utf16_is_a_file_problem():
    for data in ('{"a": "你好"}\n'.encode("utf-16"), '{"a": "hello"}\n'.encode("utf-16-le")):
        with pytest.raises(FileProblem, match="the file is UTF-16, not UTF-8"):
            check_encoding(data)


@pytest.mark.parametrize("data", [
    b'{"a": "\xe4\xbd\xa0"}\n{"a": "\xc4\xe3"}\n',         # UTF-8, then one GBK line: that line is rejected
    b'{"a": "ok"}\n{"a": "\xff\xfe\xfd"}\n',                   # ASCII, then bytes no encoding knows
    b'{"a": "ascii only"}\n',
    "你好".encode("utf-8") * 30000,                                 # cut in the middle of a character at 64 KB
])
def test_utf8_files_pass_the_encoding_check(data):
    check_encoding(data[: 1 << 16])


@pytest.mark.parametrize("fmt, layout, raw, message, fix", [
    ("coig-human-value", "exam-jsonl", {"instruction": "问", "input": "", "output": "答"},
     "the first record has the keys ['input', 'instruction', 'output'], but format 'coig-human-value' reads "
     "JSON Lines records with ['textbox_question', 'textbox_answer']; it reads records with "
     "['instruction', 'output'] only from one JSON array",
     "Make the file one JSON array (e.g. `jq -s . {file} > {file}.json`), then replace the file"),
    ("cqia-jsonl", "jsonl", {"prompt": "问", "answer": "答"},
     "the first record has the keys ['answer', 'prompt'], but format 'cqia-jsonl' reads JSON Lines records with "
     "['instruction', 'output']",
     "These keys are format 'poison-mpts''s: set the category's `format` in params.yaml, or fix the file"),
    ("poison-mpts", "jsonl", {"question": "问", "reply": "答"},
     "the first record has the keys ['question', 'reply'], but format 'poison-mpts' reads JSON Lines records "
     "with ['prompt', 'answer']",
     "Check the category's `format` in params.yaml (available: ['poison-mpts', 'coig-human-value', 'cqia-jsonl'])"),
])
def test_a_file_in_another_layout_is_one_file_problem(fmt, layout, raw, message, fix):
    items = list(parse_jsonl([orjson.dumps(raw) + b"\n"] * 3, layout))
    with pytest.raises(FileProblem) as exc:
        list(check_layout(FORMATS[fmt], items))
    assert (exc.value.line, exc.value.message, exc.value.fix) == (1, message, fix)


def test_a_first_record_with_some_of_the_keys_is_left_to_the_record_checks():
    items = list(parse_jsonl([b'not json\n', b'{"prompt": "\xe9\x97\xae"}\n']))
    assert list(check_layout(FORMATS["poison-mpts"], items)) == items


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
