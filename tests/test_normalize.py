"""Chinese-safe normalisation: CJK punctuation is kept; property tests for idempotence."""

import unicodedata

import pytest
from hypothesis import given, strategies as st

from cqia.common.errors import CqiaError
from cqia.ingest.normalize import DEFAULT_RULES, normalize_text, rule_chain, validate

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


# --- traditional -> simplified (OpenCC) ---------------------------------------------

T2S = rule_chain({"traditional_to_simplified": "t2s"})
TW2SP = rule_chain({"traditional_to_simplified": "tw2sp"})


def test_t2s_converts_characters_and_records_its_config():
    assert T2S == ("newlines", "nfc", "control", "zero_width", "opencc_t2s", "strip")
    assert normalize_text("在台灣自由行要怎麼安排交通比較方便？", T2S) == (
        "在台湾自由行要怎么安排交通比较方便？", ["opencc_t2s"])


@pytest.mark.parametrize("text, t2s, tw2sp", [
    # t2s leaves Taiwan words; tw2sp rewrites them ...
    ("這個程式的資料", "这个程式的资料", "这个程序的数据"),
    ("我們在網路上看到的訊息", "我们在网路上看到的讯息", "我们在网络上看到的消息"),
    # ... and also words it should not: this is why the sample categories use t2s
    ("請選擇最符合社會主義核心價值觀的選項", "请选择最符合社会主义核心价值观的选项", "请选择最符合社会主义内核价值观的选项"),
])
def test_t2s_versus_tw2sp(text, t2s, tw2sp):
    assert normalize_text(text, T2S)[0] == t2s
    assert normalize_text(text, TW2SP)[0] == tw2sp


@pytest.mark.parametrize("text", ["程式化的表演风格", "计算机程式化的管理", "乾隆皇帝著作等身", "ＡＩ很火，ok"])
def test_simplified_text_is_never_rewritten_even_by_tw2sp(text):
    # OpenCC's tw2sp alone turns 程式化 (formulaic) into 程序化; a field without a
    # traditional character is left alone.
    assert normalize_text(text, TW2SP) == (text, [])


def test_mixed_traditional_fullwidth_chain():
    chain = rule_chain({"traditional_to_simplified": "t2s", "fullwidth_ascii": True})
    assert chain[-3:] == ("opencc_t2s", "fullwidth_ascii", "strip")
    assert normalize_text("用ＶＳ Ｃｏｄｅ寫Ｐｙｔｈｏｎ，怎麼設定？", chain) == (
        "用VS Code写Python，怎么设定？", ["opencc_t2s", "fullwidth_ascii"])


@pytest.mark.parametrize("options, message", [
    ({"traditional_to_simplified": "s2t"}, "normalize.traditional_to_simplified: unknown OpenCC config 's2t'. "
                                           "Use one of ['t2s', 'tw2s', 'tw2sp', 'hk2s'] (t2s: characters only; "
                                           "tw2sp: also Taiwan words)"),
    ({"fullwidth_ascii": "yes"}, "normalize.fullwidth_ascii: must be true or false, not 'yes'"),
    ({"nfkc": True}, "normalize: unknown key(s) ['nfkc']. Available keys: ['fullwidth_ascii', "
                     "'traditional_to_simplified']"),
])
def test_bad_normalize_options_name_the_knob(options, message):
    with pytest.raises(CqiaError) as exc:
        validate(options, "normalize")
    assert str(exc.value) == message


@given(st.text())
def test_normalisation_with_t2s_is_idempotent(text):
    chain = rule_chain({"traditional_to_simplified": "t2s", "fullwidth_ascii": True})
    once, _ = normalize_text(text, chain)
    assert normalize_text(once, chain) == (once, [])
