"""Each rule's reason code, on simplified, traditional and mixed-script fixtures."""

import pytest

from cqia.rules import check

CFG = {"min_chars": {"output": 4}, "max_chars": {"instruction": 10}}


def rec(instruction="什么是机器学习？", output="机器学习是让计算机从数据中学习规律的方法。", input=""):
    return {"instruction": instruction, "input": input, "output": output}


@pytest.mark.parametrize("record, reason", [
    (rec(), None),
    (rec(instruction="什麼是機器學習？", output="機器學習是讓電腦從資料中學習規律的方法。"), None),
    (rec(output=""), "empty_output"),
    (rec(instruction=""), "empty_instruction"),
    (rec(output="好的"), "too_short"),
    (rec(instruction="請問ＡＩ與machine learning有什麼不同呢"), "too_long"),
    (rec(instruction="你好", output="你好"), "output_equals_instruction"),
])
def test_reason_codes(record, reason):
    verdict = check(record, CFG)
    assert (verdict[0] if verdict else None) == reason


def test_rules_skip_non_string_fields_for_the_schema_to_catch():
    assert check({"instruction": 3, "input": "", "output": ["x"]}, CFG) is None
