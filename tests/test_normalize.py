"""Chinese-safe normalisation: CJK punctuation is kept; property tests for idempotence."""

import unicodedata

from hypothesis import given, strategies as st

from cqia.normalize import DEFAULT_RULES, normalize_text, rule_chain

FULL = rule_chain({"fullwidth_ascii": True})


def test_cjk_punctuation_is_kept():
    text = "你好，世界！这是“引号”：（括号）；《书名》……"
    assert normalize_text(text, FULL) == (text, [])


def test_fullwidth_letters_digits_and_ideographic_space():
    assert normalize_text("ＡＩ在２０２３年\u3000很火，ｏｋ？", FULL) == ("AI在2023年 很火，ok？", ["fullwidth_ascii"])
    assert normalize_text("ＡＩ", DEFAULT_RULES) == ("ＡＩ", [])


def test_zero_width_control_and_newlines():
    text, changed = normalize_text("甲\u200b乙\x00丙\r\n丁\u2028戊 ", DEFAULT_RULES)
    assert text == "甲乙丙\n丁\n戊"
    assert changed == ["newlines", "control", "zero_width", "strip"]


def test_zwj_kept_inside_emoji_sequences_only():
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    assert normalize_text(f"家庭{family}", DEFAULT_RULES)[0] == f"家庭{family}"
    assert normalize_text("中\u200d文", DEFAULT_RULES)[0] == "中文"


def test_nfc_not_nfkc():
    decomposed = "e\u0301"
    assert normalize_text(decomposed, DEFAULT_RULES)[0] == "\u00e9"
    assert normalize_text("①", DEFAULT_RULES)[0] == "①"


@given(st.text())
def test_normalisation_is_idempotent(text):
    once, _ = normalize_text(text, FULL)
    assert normalize_text(once, FULL) == (once, [])
    assert unicodedata.is_normalized("NFC", once)
