"""Chinese-safe normalisation: CJK punctuation is kept; property tests for idempotence."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqia.common.errors import CqiaError
from cqia.ingest.normalize import DEFAULT_RULES, RULES, normalize_text, rule_chain, validate

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


@pytest.mark.parametrize("text, cleaned", [
    ("ＡＩ\u202e很火\u202c", "ＡＩ很火"),                              # full-width, an override and its pop
    ("請看\u2066這段話\u2069。", "請看這段話。"),                         # traditional, an isolate
    ("Python\u202a很好用\u202c", "Python很好用"),                      # mixed script, an embedding
])
def test_bidi_controls_are_removed_and_named(text, cleaned):
    assert normalize_text(text, DEFAULT_RULES) == (cleaned, ["bidi"])


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
    assert T2S == ("newlines", "nfc", "control", "zero_width", "bidi", "opencc_t2s", "strip")
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


# --- separator lines and OCR spaces (options) ----------------------------------------

COLLAPSE = rule_chain({"separator_lines": "collapse"})
STRIP = rule_chain({"separator_lines": "strip"})


@pytest.mark.parametrize("line, collapsed", [
    ("🌸🌸🌸🌸🌸🌸🌸🌸🌸🌸🌸🌸", "🌸🌸🌸"),
    ("✨ ✨ ✨ ✨ ✨ ✨ ✨ ✨", "✨✨✨"),                                       # spaces between
    ("❤️❤️❤️❤️❤️❤️❤️❤️❤️❤️❤️", "❤️❤️❤️"),                                 # with its variation selector
    ("👉🏻👉🏻👉🏻👉🏻👉🏻👉🏻👉🏻👉🏻👉🏻👉🏻👉🏻", "👉🏻👉🏻👉🏻"),                        # with a skin tone
    ("🌸🍃🌸🍃🌸🍃🌸🍃🌸🍃🌸🍃", "🌸🍃🌸🍃🌸🍃"),                                  # a unit of two
    ("★★★★★★★★★★★★★★★", "★★★"),
    ("～～～～～～～～～～～～", "～～～"),                                     # full-width wave dash
    ("————————————————", "———"),
])
def test_a_separator_line_is_collapsed(line, collapsed):
    text = f"第一道菜：番茄炒蛋\n{line}\n第二道菜：蒜蓉西兰花"
    assert normalize_text(text, COLLAPSE) == (f"第一道菜：番茄炒蛋\n{collapsed}\n第二道菜：蒜蓉西兰花",
                                             ["separator_lines_collapse"])
    assert normalize_text(text, STRIP) == ("第一道菜：番茄炒蛋\n第二道菜：蒜蓉西兰花", ["separator_lines_strip"])


@pytest.mark.parametrize("text", [
    "太好吃了😋😋😋😋😋😋😋😋😋😋😋😋",                                     # a run in prose is not a separator
    "🌸🌸🌸 分隔线 🌸🌸🌸",
    "🌸🌸🌸",                                                               # three: already short
    "------------------------------",                                    # ASCII: Markdown's rule, left alone
    "| --- | --- |\n|:-:|:-:|",
    "！！！！！！",                                                          # CJK punctuation is not a separator
    "。。。。。。。",
])
def test_what_is_not_a_separator_line_is_left_alone(text):
    assert normalize_text(text, COLLAPSE) == (text, [])


@pytest.mark.parametrize("text, cleaned", [
    ("甲 请求乙 支付货款", "甲请求乙支付货款"),                                # simplified, OCR spaces
    ("當事人 雙方 應當 遵守 合同", "當事人雙方應當遵守合同"),                    # traditional
    ("第三条\u3000本法 所称 合同 ， 是指……", "第三条本法所称合同，是指……"),     # U+3000, full-width punctuation
    ("使用 Python 编写 程序", "使用 Python 编写程序"),                         # mixed script: only CJK-CJK
])
def test_ocr_spaces_between_cjk_characters_are_removed(text, cleaned):
    assert normalize_text(text, rule_chain({"cjk_spaces": True})) == (cleaned, ["cjk_spaces"])


def test_cjk_spaces_runs_after_fullwidth_ascii_and_before_strip():
    chain = rule_chain({"fullwidth_ascii": True, "cjk_spaces": True, "separator_lines": "collapse",
                        "traditional_to_simplified": "t2s"})
    assert chain == ("newlines", "nfc", "control", "zero_width", "bidi", "opencc_t2s", "fullwidth_ascii", "cjk_spaces",
                     "separator_lines_collapse", "strip")


@given(st.text(st.sampled_from("🌸✨★～—甲乙 \u3000\n-！a\ufe0f\U0001f3fb")))
def test_separator_and_space_rules_are_idempotent(text):
    for chain in (COLLAPSE, STRIP, rule_chain({"cjk_spaces": True, "separator_lines": "collapse"})):
        once, _ = normalize_text(text, chain)
        assert normalize_text(once, chain) == (once, [])


@given(st.text(st.sampled_from("🌸✨★～—甲 \u3000\t\n！a\ufe0f\u200d\U0001f3fb\u200b\x01\u202e")))
def test_the_shortcuts_never_change_the_result(text):
    """normalize_text skips control/zero_width/bidi, and separator_lines searches, only where they would do nothing."""
    from cqia.ingest.normalize import _SEPARATOR

    def collapse(line):
        m = _SEPARATOR.fullmatch(line)
        return line[:len(line) - len(line.lstrip(" \t\u3000"))] + m.group(1) * 3 if m else line

    assert RULES["separator_lines_collapse"](text) == "\n".join(map(collapse, text.split("\n")))
    chain = rule_chain({"separator_lines": "collapse"})
    expected, changed = text, []
    for name in chain:
        new = RULES[name](expected)
        if new != expected:
            expected, changed = new, changed + [name]
    assert normalize_text(text, chain) == (expected, changed)


@pytest.mark.parametrize("options, message", [
    ({"separator_lines": "remove"}, "normalize.separator_lines: unknown mode 'remove'. Use one of ['collapse', 'strip'] "
                                    "(collapse: keep 3 repeats; strip: remove the line)"),
    ({"cjk_spaces": "yes"}, "normalize.cjk_spaces: must be true or false, not 'yes'"),
    ({"traditional_to_simplified": "s2t"}, "normalize.traditional_to_simplified: unknown OpenCC config 's2t'. "
                                           "Use one of ['t2s', 'tw2s', 'tw2sp', 'hk2s'] (t2s: characters only; "
                                           "tw2sp: also Taiwan words)"),
    ({"fullwidth_ascii": "yes"}, "normalize.fullwidth_ascii: must be true or false, not 'yes'"),
    ({"nfkc": True}, "normalize: unknown key(s) ['nfkc']. Available keys: ['cjk_spaces', 'fullwidth_ascii', "
                     "'separator_lines', 'traditional_to_simplified']"),
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
