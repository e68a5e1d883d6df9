"""Each rule's reason code, on simplified, traditional, full-width and mixed-script fixtures."""

import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqia.common.errors import CqiaError
from cqia.ingest.normalize import normalize_text, rule_chain
from cqia.ingest.pii import KINDS, LABELS, id_card_checksum_ok, may_hold, redact, scan
from cqia.ingest.rules import RuleSet, _spam_unit, check, gbk_mojibake, prose

ROOT = Path(__file__).resolve().parent.parent
CFG = {"min_chars": {"output": 4}, "max_chars": {"instruction": 10}}
ALL = {
    "min_chars": {"instruction": 2, "output": 4},
    "max_chars": {"instruction": 40, "output": 400},
    "min_cjk_ratio": {"instruction": 0.3, "output": 0.3},
    "max_invisible_ratio": 0.3,
    "mojibake": True,
    "echo_min_new_chars": 5,
    "max_char_repeats": 10,
    "max_dup_line_frac": 0.3,
    "max_dup_line_char_frac": 0.3,
    "dup_line_min_chars": 5,
    "task_types": {"选择题": {"min_chars": {"output": 1}, "min_cjk_ratio": {"output": None}},
                   "代码": {"min_cjk_ratio": {"output": 0}}},
}
RULES = RuleSet(ALL)


def rec(instruction="什么是机器学习？", output="机器学习是让计算机从数据中学习规律的方法。", input="", task=None):
    record = {"instruction": instruction, "input": input, "output": output}
    if task:
        record["task_type"] = {"major": [task[0]], "minor": [task[1]] if len(task) > 1 else []}
    return record


def reason(verdict):
    return verdict[0] if verdict else None


@pytest.mark.parametrize("record, expected", [
    (rec(), None),
    (rec(instruction="什麼是機器學習？", output="機器學習是讓電腦從資料中學習規律的方法。"), None),
    (rec(output=""), "empty_output"),
    (rec(instruction=""), "empty_instruction"),
    (rec(output="好的"), "too_short"),
    (rec(instruction="請問ＡＩ與machine learning有什麼不同呢"), "too_long"),
    (rec(instruction="你好", output="你好"), "output_equals_instruction"),
])
def test_reason_codes(record, expected):
    assert reason(check(record, CFG)) == expected


def test_rules_skip_non_string_fields_for_the_schema_to_catch():
    assert check({"instruction": 3, "input": "", "output": ["x"]}, CFG) is None
    assert RULES.check({"instruction": 3, "input": None, "output": ["x"], "task_type": "问答"}) is None


# --- invisible characters (judged before normalisation removes them) ---------------

INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200c\u2060\ufeff\u202a-\u202e\u2066-\u2069]")

@pytest.mark.parametrize("text, detail", [
    ("你\x00好\x01世\x02界\x03", "4 of its 8 characters (50%)"),        # simplified, four control characters
    ("妳\u200b好\u200c世\u2060界\ufeff", "4 of its 8 characters (50%)"),    # traditional, four zero-width
    ("ＡＩ\u202e很火\u202d，ｏｋ\u2066？\u2069", "4 of its 12 characters (33%)"),   # full-width, bidi controls
    ("Py\x7f很\x85好\x1b用\x08", "4 of its 9 characters (44%)"),       # mixed script, DEL and C1
])
def test_invisible_chars_are_a_share_of_the_text_as_it_came(text, detail):
    assert RULES.before_normalise(rec(output=text)) == (
        "invisible_chars", f"output: {detail} are control, zero-width or bidi characters, max_invisible_ratio is 0.3")


@pytest.mark.parametrize("text", [
    "你\x00好，世\u200b界",                                                   # two
    "中华人民共和国\u200b是\u200b位于\u200b亚洲\u200b东部的\u200b国家。" * 3,   # scraped encyclopedia text
    "維基百科\u200b是一個\u200b自由\u200b內容的\u200b網路\u200b百科全書。",     # traditional
    "ＡＩ\u200b模型\u200bＧＰＴ\u200b很火",                                  # full-width, 3 of 12
    "\ufeff这一行是从 Windows 记事本里复制出来的：BOM 在开头。",                  # one BOM
])
def test_a_few_invisible_characters_are_removed_not_rejected(text):
    assert RULES.before_normalise(rec(output=text)) is None
    cleaned, changed = normalize_text(text, FULL_CHAIN)
    assert not INVISIBLE.search(cleaned) and set(changed) & {"control", "zero_width", "bidi"}


def test_no_invisible_ratio_no_invisible_rule():
    assert RuleSet({}).before_normalise(rec(output="\u200b" * 30 + "好")) is None


# --- mojibake ----------------------------------------------------------------------

@pytest.mark.parametrize("output, shown", [
    ("浣犲ソ", "'浣犲ソ' reads '你好'"),                           # the example: 你好
    ("鏈哄櫒瀛︿範鏄鏁版嵁", None),                                 # 机器学习是数据, a byte lost
    ("Python 鏄涓绉嶈瑷銆傚畠鐨勮娉曠畝娲", None),                    # mixed script: Python 是一种语言。它的语法简洁
    ("锛★缉寰堢伀", "'锛★缉寰堢伀' reads 'ＡＩ很火'"),                  # full-width: ＡＩ很火
    ("閫欏嬬▼寮忕殑璩囨枡绲愭", None),                                  # traditional: 這個程式的資料結構
    ("锟斤拷锟斤拷", "'锟斤拷锟斤拷' reads '\ufffd\ufffd\ufffd\ufffd'"),   # U+FFFD's UTF-8 bytes read as GBK
])
def test_utf8_read_as_gbk_is_mojibake(output, shown):
    verdict = RULES.before_normalise(rec(instruction="请回答下面的问题", output=output))
    assert reason(verdict) == "mojibake"
    assert verdict[1].startswith("output has UTF-8 text that was decoded as GBK: ")
    if shown:
        assert verdict[1].endswith(shown)


def test_replacement_character_is_mojibake_with_its_position():
    verdict = RULES.before_normalise(rec(output="机器学习是\ufffd\ufffd的方法"))
    assert verdict == ("mojibake", "output has U+FFFD (the replacement character) at character 6: it was decoded "
                                   "with the wrong encoding upstream")


@pytest.mark.parametrize("text", [
    "請問機器學習的資料該怎麼準備？".encode("utf-8").decode("gbk", "ignore"),   # traditional, garbled
    "在台灣學程式設計，要從哪個語言開始？".encode("utf-8").decode("gbk", "ignore"),
])
def test_mojibake_detail_quotes_the_raw_text_not_what_t2s_makes_of_it(text):
    """Issue 13.10: the garbled run is quoted as it came; t2s would rewrite some of its characters."""
    verdict = RULES.before_normalise(rec(output=text))
    assert reason(verdict) == "mojibake"
    quoted = re.search(r"decoded as GBK: '([^']+)'", verdict[1]).group(1)
    assert quoted in text
    assert normalize_text(text, FULL_CHAIN)[0] != text      # what the rules used to quote from


@pytest.mark.parametrize("text", [
    "你好，世界！今天天气很好，我们去公园散步吧。",
    "這個程式的資料結構設計得很好，軟體工程師們都說滑鼠和印表機的驅動程式需要更新。",
    "本選項決定在標題列上連按兩下滑鼠按鈕的效果。目前有效的選項為：「",   # 9 of 64 bytes recode: the worst seen
    "樹狀線闊度", "當按下特殊按鍵後是否發出聲響。", "标准的搜寻目录为：",
    "ＡＩ在２０２３年很火，ｏｋ？", "Python 和 Java 先学哪个比较好？", "涓　浣　犲",   # suspects, but not a run
    "饕餮、魑魅魍魉、耄耋、龃龉、罍、爨", "锟", "烫烫烫屯屯屯",
])
def test_normal_chinese_is_not_mojibake(text):
    assert gbk_mojibake(text) is None


def sample_texts():
    texts = []
    for path in sorted((ROOT / "data/raw").rglob("*.json*")):
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
        values = orjson.loads(data) if data.lstrip().startswith(b"[") else [
            orjson.loads(line) for line in data.splitlines() if line.strip()]
        texts += [v for obj in values for v in obj.values() if isinstance(v, str)]
    return texts


def test_no_sample_text_is_mojibake_and_every_garbled_one_is():
    """The sample raw files' text fields (simplified, traditional, full-width, mixed) are clean; garbled
    the way a GBK decoder that drops bad bytes garbles them, each with 6+ Han characters is caught."""
    texts = sample_texts()
    assert len(texts) > 300
    assert [t for t in texts if gbk_mojibake(t)] == []
    longer = [t for t in texts if len(re.findall("[\u4e00-\u9fff]", t)) >= 6]
    assert len(longer) > 250
    assert [t for t in longer if not gbk_mojibake(t.encode("utf-8").decode("gbk", "ignore"))] == []


# --- output equals or echoes the instruction ------------------------------------------

@pytest.mark.parametrize("instruction, output, expected, detail", [
    ("什么是爱？", "什么是爱？", "output_equals_instruction", "output is the instruction repeated"),
    ("什麼是愛？", "什麼是愛", "output_equals_instruction",
     "output is the instruction up to punctuation, spacing, letter case and full width"),
    ("ＡＩ是什么？", "ai 是 什么", "output_equals_instruction",
     "output is the instruction up to punctuation, spacing, letter case and full width"),
    ("什么是爱？", "什么是爱？什么是爱？", "output_echoes_instruction",
     "output repeats the instruction and adds 0 characters, echo_min_new_chars is 5"),
    ("What is 爱？", "问题：What is 爱？", "output_echoes_instruction",
     "output repeats the instruction and adds 2 characters, echo_min_new_chars is 5"),
    ("什么是爱？", "什么是爱？爱是恒久忍耐，又有恩慈。", None, None),
    ("请复述：今天天气很好", "今天天气很好", None, None),       # part of the instruction: a real answer
])
def test_output_equal_to_or_echoing_the_instruction(instruction, output, expected, detail):
    verdict = RULES.check(rec(instruction=instruction, output=output))
    assert verdict == ((expected, detail) if expected else None)


def test_echo_needs_its_threshold_but_equality_does_not():
    assert check(rec(instruction="什么是爱？", output="什么是爱？什么是爱？"), {}) is None
    assert reason(check(rec(instruction="什么是爱？", output="什么是爱"), {})) == "output_equals_instruction"


# --- length bounds per task type ---------------------------------------------------

@pytest.mark.parametrize("record, expected", [
    (rec(instruction="下列哪项正确？A. 甲 B. 乙", output="B"), "too_short"),
    (rec(instruction="下列哪項正確？A. 甲 B. 乙", output="B", task=("试题", "选择题")), None),
    (rec(instruction="下列哪项正确？", output="Ｂ", task=("选择题",)), None),
    (rec(output="好" * 401), "too_long"),
])
def test_length_bounds_per_task_type(record, expected):
    verdict = RULES.check(record)
    assert reason(verdict) == expected
    if expected == "too_short":
        assert verdict[1] == "output has 1 characters, min_chars.output is 4"


def test_first_matching_task_type_wins_and_keeps_the_other_thresholds():
    cfg = {"min_chars": {"instruction": 2, "output": 10},
           "task_types": {"选择题": {"min_chars": {"output": 1}}, "试题": {"min_chars": {"output": 50}}}}
    record = rec(instruction="选", output="B", task=("试题", "选择题"))
    assert check(record, cfg) == ("too_short", "instruction has 1 characters, min_chars.instruction is 2")
    record["instruction"] = "下列哪项正确？"
    assert check(record, cfg) is None


# --- CJK ratio ------------------------------------------------------------------

@pytest.mark.parametrize("output, task, expected", [
    ("Python 和 Java 先学哪个比较好？看你的目标。", None, None),                     # mixed script
    ("學習 Python 最好的方法是多寫程式。", None, None),                               # traditional
    ("ＡＩ在２０２３年很火", None, None),                                              # full-width
    ("Machine learning lets computers learn patterns from data.", None, "low_cjk_ratio"),
    ("ＭａｃｈｉｎｅＬｅａｒｎｉｎｇ ｉｓ ｇｒｅａｔ", None, "low_cjk_ratio"),             # full-width Latin
    ("このデータはとてもおもしろいですね", None, "low_cjk_ratio"),                        # Japanese kana
    ("def add(a, b):\n    return a + b", None, "low_cjk_ratio"),
    ("def add(a, b):\n    return a + b", ("代码",), None),                              # exempt task type
    ("x = (-b ± sqrt(b^2 - 4ac)) / 2a", ("数学", "代码"), None),
    ("42 + 58 = 100", None, None),                                                     # no letters at all
])
def test_cjk_ratio_with_exempt_task_types(output, task, expected):
    verdict = RULES.check(rec(instruction="请回答下面的问题", output=output, task=task))
    assert reason(verdict) == expected


def test_cjk_ratio_detail_says_what_was_measured():
    verdict = RULES.check(rec(output="这是 the simple English sentence here"))
    assert verdict == ("low_cjk_ratio", "output: 28% CJK over 30 prose characters (2 Han characters, 5 words or "
                                        "letters of other scripts; code and maths excluded), min_cjk_ratio.output is 0.3")


@pytest.mark.parametrize("text", [
    "证明 (a+b)² = a² + 2ab + b²",                  # variables: only "ab" is a word
    "若 x > 0 且 y < 0，比较 x 和 y 的大小",
    "下列哪項正確？A 對 B 錯 C 不確定",                # traditional, option letters
    "设 ｆ(ｘ) = ｘ² + １，求 ｆ(２)",                  # full-width variables
])
def test_a_single_letter_is_a_variable_not_a_word(text):
    assert RULES.check(rec(instruction=text, output="这是一个足够长的中文回答，用来通过长度检查。")) is None


JS = "```javascript\nfunction debounce(fn, wait) {\n  let timer = null;\n  return function (...args) {\n" \
     "    clearTimeout(timer);\n    timer = setTimeout(() => fn.apply(this, args), wait);\n  };\n}\n```"
TEX = "$$\\begin{align*}\n(a+b)^2 &= (a+b)(a+b) \\\\\n&= a^2 + 2ab + b^2\n\\end{align*}$$"


@pytest.mark.parametrize("output", [
    JS,                                                                                 # only code
    TEX,                                                                                # only maths
    "可以这样写：\n" + JS + "\n每次触发都会重置定时器。",                                # simplified + code
    "可以這樣寫：\n" + JS,                                                               # traditional + code
    "用 `Array.prototype.map` 和 `filter` 就行，例如 `arr.map(x => x * 2).filter(Boolean)`。",   # inline code
    "由 \\(a^2 + b^2 = c^2\\) 得 \\[c = \\sqrt{a^2 + b^2}\\]",                         # \( \) and \[ \]
    "解：$x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}$，代入 $a = 1, b = -3, c = 2$ 得 $x = 1$ 或 $x = 2$。",
    "\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}",                                     # an environment alone
    "```python\nprint('hello world')\n",                                                # a fence never closed
])
def test_code_and_maths_are_not_prose(output):
    assert RULES.check(rec(instruction="请用代码或公式回答", output=output)) is None


@pytest.mark.parametrize("output, han, foreign", [
    ("Use a debounce function:\n" + JS + "\nIt resets the timer on every call.", 0, 10),   # English prose around code
    ("The answer is $x = 2$, because the discriminant is positive.", 0, 8),
    ("It costs $5 and the other one costs $10, so buy the cheaper one.", 0, 12),     # $ as money is prose
])
def test_prose_around_code_and_maths_is_still_measured(output, han, foreign):
    verdict = RULES.check(rec(instruction="请用代码或公式回答", output=output))
    assert reason(verdict) == "low_cjk_ratio"
    assert f"({han} Han characters, {foreign} words or letters of other scripts; code and maths excluded)" in verdict[1]


def test_prose_leaves_out_each_kind_of_markup():
    assert prose("甲`code`乙$x$丙$$y$$丁\\[z\\]戊\\(w\\)己```\nblock\n```庚") == "甲 乙 丙 丁 戊 己 庚"
    assert prose("没有标记的文字") == "没有标记的文字"
    assert prose("价格 $5 到 $10 之间") == "价格 $5 到 $10 之间"


@pytest.mark.parametrize("task", [("问答", "代码问答"), ("代码",), ("编程", "代码")])
def test_task_type_overrides_match_major_or_minor(task):
    rules = RuleSet({"min_cjk_ratio": {"output": 0.3}, "task_types": {"代码问答": {"min_cjk_ratio": {"output": 0}},
                                                                      "代码": {"min_cjk_ratio": {"output": 0}}}})
    code = "def add(a, b):\n    return a + b"                   # not fenced: only the task type exempts it
    assert reason(rules.check(rec(output=code))) == "low_cjk_ratio"
    assert rules.check(rec(output=code, task=task)) is None


# --- repeated characters and lines ----------------------------------------------

@pytest.mark.parametrize("output, expected", [
    ("哈" * 11, ("repeated_chars", "output repeats '哈' 11 times in a row, max_char_repeats is 10")),
    ("哈" * 10 + "，真好笑", None),
    ("好的" * 12, ("repeated_chars", "output repeats '好的' 12 times in a row, max_char_repeats is 10")),
    ("對對對對對對對對對對對對對對對", ("repeated_chars",
                                      "output repeats '對' 15 times in a row, max_char_repeats is 10")),
    ("ＡＡＡＡＡＡＡＡＡＡＡＡ好", ("repeated_chars", "output repeats 'Ａ' 12 times in a row, max_char_repeats is 10")),
    ("笑死" + "ha" * 12, ("repeated_chars",
                                   "output repeats 'ha' 12 times in a row, max_char_repeats is 10")),
    ("笑死😂😂😂😂😂😂😂😂😂😂😂😂", ("repeated_chars",
                                   "output repeats '😂' 12 times in a row, max_char_repeats is 10")),
    ("分隔线\n------------------------------\n正文内容在这里", None),
    ("一年有31536000000毫秒，约等于1000000000000纳秒的三万分之一", None),
    ("代码如下：\n" + " " * 16 + "return 值", None),
])
def test_repeated_characters(output, expected):
    assert RULES.check(rec(instruction="说点什么吧", output=output)) == expected


@pytest.mark.parametrize("output, unit, times", [
    ("好好学习" * 11, "好好学习", 11),                                   # simplified, 4 characters
    ("我爱你" * 12 + "，真的", "我爱你", 12),
    ("我回答：" + "對不起" * 15, "對不起", 15),                          # traditional
    ("字母表的开头是" + "ＡＢＣ" * 11, "ＡＢＣ", 11),                     # full-width Latin
    ("好的，" + "ＯＫ啦！" * 13, "ＯＫ啦！", 13),                          # full-width, mixed with Han
    ("笑死" + "abc" * 11, "abc", 11),                                   # mixed script
    ("结论：" + "Go加油" * 20, "Go加油", 20),
    ("点赞👍好棒" + "👍好棒" * 11, "👍好棒", 12),                        # emoji in the unit
    ("好的好的" * 6, "好的", 12),                                       # the shortest unit is named
])
def test_repeated_units_of_three_and_four_characters(output, unit, times):
    assert RULES.check(rec(instruction="说点什么吧", output=output)) == (
        "repeated_chars", f"output repeats {unit!r} {times} times in a row, max_char_repeats is 10")


@pytest.mark.parametrize("output", [
    "好好学习" * 10 + "，天天向上",                                      # 10 times: the threshold is "more than 10"
    "一天一天地好起来，研究研究再说，大家高高兴兴，你一言我一语，说说笑笑，看看想想。",
    "学而不思则罔，思而不学则殆。知之为知之，不知为不知，是知也。己所不欲，勿施于人。",
    "爱是恒久忍耐，又有恩慈；爱是不嫉妒，爱是不自夸，不张狂，不作害羞的事，不求自己的益处。",    # 排比
    "我们要团结，团结，再团结；学习，学习，再学习。" * 2,
    "风声雨声读书声，声声入耳；家事国事天下事，事事关心。",                    # 對聯
    "".join(f"| 第{i}列 " for i in range(1, 13)) + "|\n" + "| --- " * 12 + "|\n" + "| 1 " * 12 + "|",  # Markdown
    "|" + "---|" * 15 + "\n" + "|:-:" * 12 + "|",
    "结果：" + "0, " * 20 + "0",                                        # no letter in the unit
    "分隔：" + "=-" * 30 + "\n" + "*~*" * 15,
    "    " * 12 + "return 值",
    "一年有31536000000毫秒，圆周率是3.14159265358979323846264338327950288419716939937510",
])
def test_legitimate_repetition_is_not_repeated_chars(output):
    assert RULES.check(rec(instruction="说点什么吧", output=output)) is None


def test_repeated_unit_threshold_per_task_type():
    rules = RuleSet({"max_char_repeats": 10, "task_types": {"生物": {"max_char_repeats": 40}}})
    dna = "亨廷顿病的致病突变是 CAG 重复：" + "CAG" * 30
    assert rules.check(rec(output=dna)) == (
        "repeated_chars", "output repeats 'CAG' 30 times in a row, max_char_repeats is 10")
    assert rules.check(rec(output=dna, task=("问答", "生物"))) is None


def _reference(value, most):
    """repeated_chars as a regex per unit length over the whole text, with no prefilter."""
    for k in (1, 2, 3, 4):
        pattern = re.compile(r"(?s)(.{%d})\1{%d,}" % (k, most))
        for m in pattern.finditer(value):
            if _spam_unit(m.group(1)):
                return m.group(1), len(m.group()) // k
    return None


_PIECES = st.sampled_from(["哈", "好的", "我爱你", "好好学习", "對不起", "ＡＢ", "ab", "-", "|", " ", "\n", "😂", "0",
                           "一", "天", "x", "，"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_PIECES, st.integers(1, 14)), max_size=8), st.integers(1, 12))
def test_the_prefilter_never_hides_a_repeat(runs, most):
    """The prefilter is only a shortcut: the verdict is the regexes' over the whole text, for any threshold."""
    text = "".join(piece * times for piece, times in runs)
    verdict = RuleSet({"max_char_repeats": most}).check(rec(instruction="说点什么吧", output=text or "无"))
    found = _reference(text, most)
    if found is None:
        assert verdict is None
    else:
        assert verdict == ("repeated_chars", f"output repeats {found[0]!r} {found[1]} times in a row, "
                                             f"max_char_repeats is {most}")


@pytest.mark.parametrize("line", ["关注我，每天分享干货！", "關注我，每天分享乾貨！", "Ｆｏｌｌｏｗ ｍｅ，每天分享",
                                  "Follow me 每天分享 tips"])
def test_repeated_lines_are_gophers_duplicate_line_fraction(line):
    spam = "\n".join([line] * 4 + ["正文内容在这里"])
    assert RULES.check(rec(output=spam)) == (
        "repeated_lines", f"output: 3 of its 5 lines (60%) repeat an earlier line ({line!r} 4 times), "
                          "max_dup_line_frac is 0.3")


def test_repeated_lines_by_their_share_of_characters():
    """A long paragraph pasted twice among short lines: few lines, many characters."""
    para = "机器学习是人工智能的一个分支，它让计算机从数据中学习规律，而不是由人写出每一条规则。" * 2
    text = "\n".join([para, "一、定义", "二、方法", "三、应用", "四、局限", para])
    verdict = RULES.check(rec(output=text))
    assert verdict == ("repeated_lines", f"output: {len(para)} of its {2 * len(para) + 16} characters (46%) are in lines "
                                         f"that repeat an earlier line ('{para[:20]}…' 2 times), "
                                         "max_dup_line_char_frac is 0.3")


@pytest.mark.parametrize("output", [
    # six recipes, each with the same short headings: list markers and emoji are not letters
    "\n".join(f"{i}. {dish}\n👉🏻食材：\n{food}\n👉🏻做法：\n{how}" for i, (dish, food, how) in enumerate([
        ("番茄炒蛋", "番茄两个，鸡蛋三个", "鸡蛋先炒至凝固盛出，再炒番茄出汁后合炒"),
        ("蒜蓉西兰花", "西兰花一颗，大蒜五瓣", "西兰花焯水一分钟，蒜末爆香后大火翻炒"),
        ("可乐鸡翅", "鸡翅十个，可乐一罐", "鸡翅煎至两面金黄，倒入可乐小火收汁"),
        ("酸辣土豆丝", "土豆两个，干辣椒若干", "土豆丝泡水去淀粉，醋和辣椒大火快炒"),
        ("麻婆豆腐", "嫩豆腐一块，牛肉末一百克", "豆腐焯水，肉末炒香后加豆瓣酱和豆腐烧入味"),
        ("清炒時蔬", "當季青菜一把", "大火熱油，下青菜快速翻炒，加鹽出鍋"),          # traditional
    ], 1)),
    # a product table: a long line repeats, but it is a small share of the post
    "\n".join(f"【{name}】\n价格：{price}元\n适合肤质：油皮/混油皮\n使用感受：{feel}" for name, price, feel in [
        ("氨基酸洁面", 59, "泡沫细腻，洗完不紧绷"), ("控油爽肤水", 89, "清爽不黏，夏天很舒服"),
        ("水杨酸精华", 139, "闭口少了很多，但要建立耐受"), ("清爽防晒乳", 99, "不搓泥，成膜快"),
        ("保湿乳液", 79, "质地轻薄，吸收很快"), ("ＳＰＦ５０防曬", 129, "戶外用也不怕"),
    ]),
    "if a:\n    pass\n}\n}\n}\n}\n}\n说明：以上是代码",                      # short lines never count
    "🌸🌸🌸\n第一段内容在这里\n🌸🌸🌸\n第二段内容在这里\n🌸🌸🌸\n第三段内容在这里",   # emoji separators
])
def test_layout_that_repeats_short_lines_is_not_repeated_lines(output):
    assert RULES.check(rec(instruction="推荐几道家常菜", output=output)) is None


def test_duplicate_line_thresholds_per_task_type_and_min_chars():
    lyric = "\n".join(["天空好想下雨", "我好想住你隔壁", "傻站在你家楼下", "抬起头数乌云"] * 2)
    rules = RuleSet({"max_dup_line_frac": 0.3, "dup_line_min_chars": 5,
                     "task_types": {"歌词": {"max_dup_line_frac": None}}})
    assert reason(rules.check(rec(output=lyric))) == "repeated_lines"
    assert rules.check(rec(output=lyric, task=("创作", "歌词"))) is None
    assert RuleSet({"max_dup_line_frac": 0.3, "dup_line_min_chars": 7}).check(rec(output=lyric)) is None


def test_no_fraction_no_line_rule():
    assert RuleSet({"dup_line_min_chars": 5}).check(rec(output="关注我，每天分享干货！\n" * 5)) is None


def _gopher(text, min_chars):
    """datatrove's find_duplicates over the non-blank stripped lines, short lines left out."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    seen, dup, dup_chars = set(), 0, 0
    for line in lines:
        if line in seen and len(re.sub(r"[\W_]", "", line)) >= min_chars:
            dup += 1
            dup_chars += len(line)
        seen.add(line)
    return dup, len(lines), dup_chars, sum(map(len, lines))


_LINES = st.sampled_from(["关注我，每天分享干货！", "關注我！", "👉🏻做法：", "第一步：洗净切块", "ok", "", "  ", "🌸🌸🌸",
                          "Follow me for more", "正文内容"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, max_size=12), st.floats(0, 1), st.floats(0, 1), st.integers(0, 8))
def test_repeated_lines_is_gophers_rule(lines, frac, char_frac, min_chars):
    text = "\n".join(lines)
    rules = RuleSet({"max_dup_line_frac": frac, "max_dup_line_char_frac": char_frac, "dup_line_min_chars": min_chars})
    verdict = rules.check(rec(instruction="说点什么吧", output=text or "无"))
    dup, total, dup_chars, chars = _gopher(text, min_chars)
    expected = dup > 0 and (dup > frac * total or dup_chars > char_frac * chars)
    assert (reason(verdict) == "repeated_lines") == expected


# --- PII --------------------------------------------------------------------------

MASK_ALL = frozenset(KINDS)


@pytest.mark.parametrize("text, masked, kinds", [
    ("请联系 zhang.san@example.com 获取资料", "请联系 [EMAIL] 获取资料", ["email"]),
    ("請致電13812345678或 138-1234-5678", "請致電[PHONE]或 [PHONE]", ["phone"]),
    ("Call +86 138 1234 5678 or 010-12345678", "Call [PHONE] or [PHONE]", ["phone"]),
    ("身份证号11010519491231002X，请核对", "身份证号[ID_CARD]，请核对", ["id_card"]),
    ("加我QQ：123456789，或者扣扣号 54321", "加我QQ：[QQ]，或者扣扣号 [QQ]", ["qq"]),
    ("加我QQ號：123456789，QQ號碼 54321", "加我QQ號：[QQ]，QQ號碼 [QQ]", ["qq"]),           # traditional
    ("13812345678@163.com 是我的邮箱", "[EMAIL] 是我的邮箱", ["email"]),
    ("邮箱zhang@example.com13812345678", "邮箱[EMAIL][PHONE]", ["email", "phone"]),   # the mask frees the e-mail
    ("我的号码是１３８１２３４５６７８", "我的号码是[PHONE]", ["phone"]),             # full-width: found with or without fullwidth_ascii
])
def test_pii_is_masked(text, masked, kinds):
    assert scan(text, KINDS, MASK_ALL) == (masked, kinds, None)


# The same reading as `redact`, on the text as normalisation left it: a category without
# fullwidth_ascii keeps full-width digits, and no category turns ＠ or ． into ASCII. Only the span
# becomes the token; the full-width and CJK text around it stays as it was.
@pytest.mark.parametrize("text, masked, kinds", [
    ("邮箱：ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ，ＡＩ问题请写信。", "邮箱：[EMAIL]，ＡＩ问题请写信。", ["email"]),
    ("邮箱：wang＠example．com，ＡＩ问题请写信。", "邮箱：[EMAIL]，ＡＩ问题请写信。", ["email"]),   # what fullwidth_ascii leaves
    ("請寄信至ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ．ｔｗ。", "請寄信至[EMAIL]。", ["email"]),                  # traditional
    ("致电１３８１２３４５６７８（ＡＭ９点后）", "致电[PHONE]（ＡＭ９点后）", ["phone"]),
    ("請致電１３８\u3000１２３４\u3000５６７８，謝謝。", "請致電[PHONE]，謝謝。", ["phone"]),
    ("电话：138 1234 5678。", "电话：[PHONE]。", ["phone"]),                           # U+3000 -> " " by fullwidth_ascii
    ("拨打１３８\u200b１２３４\u200b５６７８即可", "拨打[PHONE]即可", ["phone"]),        # zero-width inside
    ("拨打138\u202a1234\u202c5678即可", "拨打[PHONE]即可", ["phone"]),               # bidi controls: normalisation keeps them
    ("座机０１０－１２３４５６７８，手机＋８６ １３９ ８７６５ ４３２１", "座机[PHONE]，手机[PHONE]", ["phone"]),
    ("身份证号：１１０１０５１９４９１２３１００２Ｘ。", "身份证号：[ID_CARD]。", ["id_card"]),
    ("身分證號碼：１１０１０５１９４９１２３１００２ｘ。", "身分證號碼：[ID_CARD]。", ["id_card"]),       # traditional
    ("加我QQ：１２３４５６７８９，或ＱＱ号码 ５４３２１。", "加我QQ：[QQ]，或ＱＱ号码 [QQ]。", ["qq"]),
    ("ＱＱ號碼：９８７６５４３２１", "ＱＱ號碼：[QQ]", ["qq"]),                                           # traditional
])
def test_pii_is_masked_in_any_width_and_only_its_span(text, masked, kinds):
    assert scan(text, KINDS, MASK_ALL) == (masked, kinds, None)
    assert redact(text, KINDS) == (masked, kinds)                     # the lineage reads the same


@pytest.mark.parametrize("text", [
    "身份证号110105194912310021不对",              # wrong check character
    "订单号 1381234567890 已发货",                  # 13 digits: not a phone number
    "这本书出版于 2023-01-15，共 1234 页",
    "在 Python 里 @decorator 是装饰器",
    "123456789 这个数字很大",                       # a bare number is not a QQ number
    "订单号 １３８１２３４５６７８９０ 已发货，第１２３４ 页",   # full-width lookalikes too
    "身份证号１１０１０５１９４９１２３１００２１不对",
    "在 Ｐｙｔｈｏｎ 里 ＠ｄｅｃｏｒａｔｏｒ 是装饰器；ＱＱ群不公开",
])
def test_pii_lookalikes_are_left_alone(text):
    assert scan(text, KINDS, MASK_ALL) == (text, [], None)


@pytest.mark.parametrize("text, redacted, kinds", [
    ("我的号码是１３８１２３４５６７８", "我的号码是[PHONE]", ["phone"]),             # what fullwidth_ascii would turn into PII
    ("电话\u3000１３８\u3000１２３４\u3000５６７８。", "电话\u3000[PHONE]。", ["phone"]),
    ("拨打138\u200b1234\u200b5678即可", "拨打[PHONE]即可", ["phone"]),             # what zero_width would join
    ("ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ 或 ＱＱ號碼：９８７６５４３２１", "[EMAIL] 或 ＱＱ號碼：[QQ]", ["email", "qq"]),
    ("身分證１１０１０５１９４９１２３１００２Ｘ", "身分證[ID_CARD]", ["id_card"]),
    ("订单号 1381234567890 已发货，１２３ 页", "订单号 1381234567890 已发货，１２３ 页", []),
])
def test_redact_finds_pii_in_any_width(text, redacted, kinds):
    assert redact(text, KINDS) == (redacted, kinds)


_PII_PIECES = st.sampled_from(["13812345678", "１３８１２３４５６７８", "138-1234-5678", "+86 139 8765 4321", "010-12345678",
                               "zhang@example.com", "ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "11010519491231002X", "QQ號：123456",
                               "ＱＱ：１２３４５６", "扣扣", "\u200b", "\u3000", " ", "-", "电话", "，", "1", "０", "@", "x"])
FULL_CHAIN = rule_chain({"fullwidth_ascii": True, "traditional_to_simplified": "t2s"})


@settings(max_examples=300, deadline=None)
@given(st.lists(_PII_PIECES, max_size=12))
def test_redacted_text_has_no_pii_even_once_normalised(pieces):
    original = "".join(pieces)
    text, kinds = redact(original, KINDS)
    assert scan(normalize_text(text, FULL_CHAIN)[0], KINDS, MASK_ALL)[1] == []
    assert redact(text, KINDS) == (text, [])
    assert may_hold(original) or not kinds              # the shortcut lineage takes never skips PII


_ANY_TEXT = st.lists(st.one_of(_PII_PIECES, st.text(max_size=4),
                               st.text("0123456789０１２３４５６７８９@＠.．-－ \u3000\u200bQＱqａa扣号號：:", max_size=6)),
                     max_size=10).map("".join)


@settings(max_examples=300, deadline=None)
@given(_ANY_TEXT)
def test_after_scan_masks_everything_the_lineage_reading_finds_nothing(text):
    masked, kinds, found = scan(text, KINDS, MASK_ALL)
    assert found is None
    assert redact(masked, KINDS) == (masked, [])
    assert scan(masked, KINDS, MASK_ALL) == (masked, [], None)
    assert kinds or masked == text


@settings(max_examples=200, deadline=None)
@given(_ANY_TEXT)
def test_a_kind_to_reject_is_found_where_a_mask_would_be(text):
    _, kinds, _ = scan(text, KINDS, MASK_ALL)
    for kind in kinds:
        assert scan(text, KINDS, MASK_ALL - {kind})[2].kind == kind


def test_id_card_checksum():
    assert id_card_checksum_ok("11010519491231002X") and id_card_checksum_ok("11010519491231002x")
    assert not id_card_checksum_ok("110105194912310021")


def test_pii_mask_or_reject_per_kind_records_the_mask():
    rules = RuleSet({"pii": {"email": "mask", "id_card": "reject", "phone": "keep"}})
    record = rec(output="邮箱 a@b.cn，电话 13812345678")
    steps, verdict = rules.mask_pii(record)
    assert verdict is None and record["output"] == "邮箱 [EMAIL]，电话 13812345678"
    assert steps == [{"step": "mask", "field": "output", "rules": ["email"],
                      "before": "邮箱 a@b.cn，电话 13812345678", "after": "邮箱 [EMAIL]，电话 13812345678"}]
    steps, verdict = rules.mask_pii(rec(instruction="核对身份證 11010519491231002X"))
    assert verdict == ("pii", "instruction contains a 身份证号 at character 7 (pii.id_card is reject)")


@pytest.mark.parametrize("output, kind, at", [
    ("邮箱：ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email", 4),
    ("邮箱：wang＠example．com", "email", 4),
    ("電話：１３８\u3000１２３４\u3000５６７８", "phone", 4),
    ("身分證：１１０１０５１９４９１２３１００２Ｘ", "id_card", 5),
    ("ＱＱ號碼：１２３４５６７８９", "qq", 6),
])
def test_pii_in_any_width_is_rejected_at_its_character(output, kind, at):
    rules = RuleSet({"pii": {kind: "reject"}})
    steps, verdict = rules.mask_pii(rec(output=output))
    assert steps == [] and verdict == ("pii", f"output contains {LABELS[kind]} at character {at} (pii.{kind} is reject)")


def test_pii_in_metadata_and_copyright_is_masked_or_rejected_too():
    rules = RuleSet({"pii": {"email": "mask", "qq": "reject"}})
    record = {**rec(output="回答"), "metadata": "来源：知乎，作者邮箱 zhang.san@example.com",
              "copyright": "转载请联系 ｌｉ＠ｅｘａｍｐｌｅ．ｃｎ"}
    steps, verdict = rules.mask_pii(record)
    assert verdict is None
    assert (record["metadata"], record["copyright"]) == ("来源：知乎，作者邮箱 [EMAIL]", "转载请联系 [EMAIL]")
    assert [(s["field"], s["rules"]) for s in steps] == [("metadata", ["email"]), ("copyright", ["email"])]
    steps, verdict = rules.mask_pii({**rec(output="回答"), "metadata": "作者ＱＱ：１２３４５６７８９"})
    assert verdict == ("pii", "metadata contains a QQ number at character 6 (pii.qq is reject)")


def test_pii_a_category_keeps_is_left_as_written():
    rules = RuleSet({"pii": {"email": "keep", "phone": "mask"}})
    record = rec(output="邮箱 wang＠example．com，电话１３８１２３４５６７８。")
    steps, verdict = rules.mask_pii(record)
    assert verdict is None and record["output"] == "邮箱 wang＠example．com，电话[PHONE]。"
    assert [s["rules"] for s in steps] == [["phone"]]


# --- configuration errors name the knob ------------------------------------------

@pytest.mark.parametrize("cfg, message", [
    ({"min_char": {"output": 3}}, "rules: unknown key(s) ['min_char']. Available keys: ['min_chars', "),
    ({"min_chars": {"outptu": 3}}, "rules.min_chars: unknown field 'outptu'. Use ['instruction', 'input', 'output']"),
    ({"min_chars": {"output": "10"}}, "rules.min_chars.output: '10' is not a whole number >= 0"),
    ({"min_cjk_ratio": {"output": 30}}, "rules.min_cjk_ratio.output: 30 is not a ratio between 0 and 1"),
    ({"max_char_repeats": 0}, "rules.max_char_repeats: 0 is not a whole number >= 1"),
    ({"mojibake": "yes"}, "rules.mojibake: must be true or false, not 'yes'"),
    ({"pii": {"phone": "hide"}}, "rules.pii.phone: unknown action 'hide'. Use one of ['mask', 'reject', 'keep']"),
    ({"pii": {"wechat": "mask"}}, "rules.pii: unknown kind 'wechat'. Use ['email', 'id_card', 'phone', 'qq']"),
    ({"task_types": {"代码": {"pii": {"email": "mask"}}}},
     "rules.task_types.代码: key(s) ['pii'] cannot be set per task type. Available keys:"),
    ({"max_line_repeats": 3}, "rules: max_line_repeats was replaced by max_dup_line_frac, max_dup_line_char_frac "
                              "and dup_line_min_chars (docs/rules.md). Available keys: ['min_chars', "),
    ({"max_invisible_chars": 10}, "rules: max_invisible_chars was replaced by max_invisible_ratio (docs/rules.md). "
                                  "Available keys: ["),
    ({"task_types": {"代码": {"max_line_repeats": 9}}}, "rules.task_types.代码: max_line_repeats was replaced by "),
    ({"max_dup_line_frac": 30}, "rules.max_dup_line_frac: 30 is not a ratio between 0 and 1"),
    ({"max_invisible_ratio": "half"}, "rules.max_invisible_ratio: 'half' is not a ratio between 0 and 1"),
    ({"dup_line_min_chars": -1}, "rules.dup_line_min_chars: -1 is not a whole number >= 0"),
])
def test_bad_rule_config_names_the_knob(cfg, message):
    with pytest.raises(CqiaError) as exc:
        RuleSet(cfg)
    assert str(exc.value).startswith(message)
