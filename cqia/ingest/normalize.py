"""Chinese-safe text normalisation (pure functions on strings).

What it does, in order, to instruction, input and output:
  newlines        CRLF, CR, U+2028 and U+2029 -> "\\n"
  nfc             Unicode NFC (not NFKC: NFKC would turn CJK punctuation
                  such as "，" and "：" into ASCII)
  control         C0/C1 control characters except "\\n" and "\\t" removed
  zero_width      U+200B, U+200C, U+2060, U+FEFF removed; U+200D (ZWJ) kept
                  only inside emoji sequences
  bidi            bidi controls (U+202A-U+202E, U+2066-U+2069) removed
  opencc_<config> (option) traditional -> simplified Chinese with OpenCC, for
                  a field that contains a traditional character (see below)
  fullwidth_ascii (option) full-width letters and digits -> ASCII, U+3000 ->
                  " "; full-width and CJK punctuation are kept
  cjk_spaces      (option) spaces between two CJK characters removed: what OCR
                  inserts ("甲 请求乙" -> "甲请求乙")
  separator_lines_collapse, separator_lines_strip
                  (option) a line that is only one emoji or symbol (or a unit
                  of up to 4) repeated 4 times or more, a separator, is
                  collapsed to 3 repeats ("🌸🌸🌸") or removed
  strip           leading and trailing white space removed

Each rule is named so that the lineage can say which rules changed a field;
the OpenCC rule carries its config in its name (`opencc_t2s`), so the lineage
records which conversion was applied.

Traditional -> simplified: a category chooses an OpenCC config with
`normalize: {traditional_to_simplified: t2s}`. A field is converted only if it
contains a traditional character (one that OpenCC's t2s changes on its own):
simplified text is left exactly as it is, which the phrase-level configs
(`tw2sp`) would not do ("程式化" -> "程序化"), and neither would t2s with its
variant phrases ("重覆" -> "重复").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Callable

from cqia.common.errors import CqiaError

_NEWLINES = re.compile("\r\n|[\r\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u2060\ufeff]")
_ZWJ = "\u200d"
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069]")
INVISIBLE_RULES = frozenset({"control", "zero_width", "bidi"})       # they only remove what _INVISIBLE finds
# CJK characters for cjk_spaces: Han, and CJK and full-width punctuation (，。、：；！？“”《》【】…).
_CJK_CLASS = ("\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
              "\u3001-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\u2018\u2019\u201c\u201d\u2026\u2014")
_CJK_SPACES = re.compile(f"(?<=[{_CJK_CLASS}])[ \u3000]+(?=[{_CJK_CLASS}])")
# A separator line: one emoji or non-ASCII symbol (with its variation selector, skin tone or ZWJ
# sequence), or a unit of up to 4 of them, repeated 4 or more times, spaces allowed between.
# ASCII separators ("-----", "=====", "|---|") are left alone: Markdown and code read them, and
# they are never repeated_chars; so is CJK punctuation ("！！！！", "。。。。") but the wave dash ("～～～～").
_SYMBOL = ("[^\x00-\x7f\\w\\s\ufe0f\u200d\U0001f3fb-\U0001f3ff"
           "\u3001-\u303f\uff01-\uff5d\uff5f-\uff65\u2018-\u201f\u2026]")
_CLUSTER = f"{_SYMBOL}[\ufe0f\U0001f3fb-\U0001f3ff]*(?:\u200d{_SYMBOL}[\ufe0f\U0001f3fb-\U0001f3ff]*)*"
_SEPARATOR = re.compile(f"[ \t\u3000]*((?:{_CLUSTER}){{1,4}}?)(?:[ \t\u3000]*\\1){{3,}}[ \t\u3000]*")   # a whole line
_INDENT = " \t\u3000"
# Where a separator line can be: a line that starts with a symbol. Searching for the newline before
# it lets the regex engine skip ahead to each "\n" in C.
_SYMBOL_FIRST = re.compile(f"[ \t\u3000]*{_SYMBOL}")
_SYMBOL_AFTER_NEWLINE = re.compile(f"\n[ \t\u3000]*{_SYMBOL}")
SEPARATOR_KEEP = 3
# Full-width letters and digits only; punctuation in FF01-FF5E is left alone.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)}
_FULLWIDTH.update({cp: cp - 0xFEE0 for cp in range(0xFF21, 0xFF3B)})
_FULLWIDTH.update({cp: cp - 0xFEE0 for cp in range(0xFF41, 0xFF5B)})
_FULLWIDTH[0x3000] = 0x20
_HAS_FULLWIDTH = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\u3000]")

# OpenCC configs that convert to simplified Chinese. t2s converts characters
# only (台灣 -> 台湾; the Taiwan word 程式 stays 程式); tw2s and hk2s also read
# Taiwan and Hong Kong variant characters; tw2sp also rewrites Taiwan words
# (程式 -> 程序, 網路 -> 网络), and with them some it should not
# (核心價值觀 -> 内核价值观).
OPENCC_CONFIGS = ("t2s", "tw2s", "tw2sp", "hk2s")
_converters: dict[str, Any] = {}


def _converter(config: str):
    if config not in _converters:
        from opencc import OpenCC

        _converters[config] = OpenCC(config)
    return _converters[config]


_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2EBEF),
               (0x30000, 0x3134F))
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_traditional: list[tuple[re.Pattern, frozenset[str]]] = []


def has_traditional(text: str) -> bool:
    """True if `text` has a traditional character: one that OpenCC's t2s changes on its own.

    The ~4,600 characters come from the installed OpenCC once (~30 ms), so they
    always agree with the converter. The ~4,200 in the BMP are a regex class,
    which sre compiles to a bitmap: searching is ~8x faster than converting a
    field that has none. The ~360 astral ones (CJK Extension B...) are a set,
    looked at only when the text has an astral character at all: in a class
    they would be a list sre scans for every character of the text.
    """
    if not _traditional:
        chars = [chr(cp) for low, high in _CJK_RANGES for cp in range(low, high + 1)]
        converted = _converter("t2s").convert("\n".join(chars)).split("\n")
        changed = [c for c, new in zip(chars, converted) if c != new]
        bmp = re.compile("[" + "".join(c for c in changed if ord(c) < 0x10000) + "]")
        _traditional.append((bmp, frozenset(c for c in changed if ord(c) >= 0x10000)))
    bmp, astral = _traditional[0]
    if bmp.search(text):
        return True
    return bool(astral) and _ASTRAL.search(text) is not None and not astral.isdisjoint(text)


def _opencc(config: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.isascii() or not has_traditional(text):
            return text                         # no traditional character: leave the words alone
        try:
            return _converter(config).convert(text)
        except UnicodeEncodeError:              # a lone surrogate: not text OpenCC can read
            return text

    return convert


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return cp >= 0x1F000 or 0x2600 <= cp <= 0x27BF or ch == "\ufe0f"


def _zero_width(text: str) -> str:
    text = _ZERO_WIDTH.sub("", text)
    if _ZWJ in text:
        kept = []
        for i, ch in enumerate(text):
            if ch == _ZWJ and not (0 < i < len(text) - 1 and _is_emoji(text[i - 1]) and _is_emoji(text[i + 1])):
                continue
            kept.append(ch)
        text = "".join(kept)
    return text


def _nfc(text: str) -> str:
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


def _fullwidth_char(match: re.Match) -> str:
    return chr(_FULLWIDTH[ord(match.group())])


def _fullwidth(text: str) -> str:
    # A regex touches only the matches; str.translate with a dict looks up every character
    # (1.2 s per 40k records in a profile of the category stage).
    return _HAS_FULLWIDTH.sub(_fullwidth_char, text)


def _cjk_spaces(text: str) -> str:
    if " " not in text and "\u3000" not in text:
        return text
    return _CJK_SPACES.sub("", text)


def _separator_lines(collapse: bool) -> Callable[[str], str]:
    def rule(text: str) -> str:
        if text.isascii() or not (_SYMBOL_FIRST.match(text) or _SYMBOL_AFTER_NEWLINE.search(text)):
            return text
        lines = text.split("\n")
        kept = []
        for line in lines:
            # Most lines start with a letter, a digit or CJK punctuation: one look at the first character.
            first = line.lstrip(_INDENT)[:1]
            if first and ord(first) > 0x7F and not first.isalnum():
                m = _SEPARATOR.fullmatch(line)
                if m:
                    if collapse:
                        kept.append(line[:len(line) - len(line.lstrip(_INDENT))] + m.group(1) * SEPARATOR_KEEP)
                    continue
            kept.append(line)
        return text if len(kept) == len(lines) and kept == lines else "\n".join(kept)

    return rule


RULES: dict[str, Callable[[str], str]] = {
    "newlines": lambda s: _NEWLINES.sub("\n", s),
    "nfc": _nfc,
    "control": lambda s: _CONTROL.sub("", s),
    "zero_width": _zero_width,
    "bidi": lambda s: _BIDI.sub("", s),
    "fullwidth_ascii": _fullwidth,
    "cjk_spaces": _cjk_spaces,
    "separator_lines_collapse": _separator_lines(collapse=True),
    "separator_lines_strip": _separator_lines(collapse=False),
    "strip": lambda s: s.strip(),
}
RULES.update({f"opencc_{config}": _opencc(config) for config in OPENCC_CONFIGS})
DEFAULT_RULES = ("newlines", "nfc", "control", "zero_width", "bidi", "strip")
SEPARATOR_MODES = ("collapse", "strip")
OPTIONS = {
    "fullwidth_ascii": "true to turn full-width letters, digits and U+3000 into ASCII",
    "traditional_to_simplified": f"an OpenCC config, one of {list(OPENCC_CONFIGS)}",
    "cjk_spaces": "true to remove the spaces OCR puts between two CJK characters",
    "separator_lines": f"one of {list(SEPARATOR_MODES)}: what to do with a line of one emoji or symbol repeated",
}


def validate(options: Any, where: str) -> dict[str, Any]:
    """Check a category's `normalize` options; return them."""
    if not isinstance(options, dict):
        raise CqiaError("must be a mapping", where=where, fix=f"Available keys: {sorted(OPTIONS)}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise CqiaError(f"unknown key(s) {unknown}", where=where, fix=f"Available keys: {sorted(OPTIONS)}")
    if not isinstance(options.get("fullwidth_ascii", False), bool):
        raise CqiaError(f"must be true or false, not {options['fullwidth_ascii']!r}", where=f"{where}.fullwidth_ascii")
    if not isinstance(options.get("cjk_spaces", False), bool):
        raise CqiaError(f"must be true or false, not {options['cjk_spaces']!r}", where=f"{where}.cjk_spaces")
    config = options.get("traditional_to_simplified")
    if config not in (None, False) + OPENCC_CONFIGS:
        raise CqiaError(f"unknown OpenCC config {config!r}", where=f"{where}.traditional_to_simplified",
                        fix=f"Use one of {list(OPENCC_CONFIGS)} (t2s: characters only; tw2sp: also Taiwan words)")
    mode = options.get("separator_lines")
    if mode not in (None, False) + SEPARATOR_MODES:
        raise CqiaError(f"unknown mode {mode!r}", where=f"{where}.separator_lines",
                        fix=f"Use one of {list(SEPARATOR_MODES)} (collapse: keep {SEPARATOR_KEEP} repeats; "
                            "strip: remove the line)")
    return options


def rule_chain(options: dict) -> tuple[str, ...]:
    """The rules to run for a category's `normalize` options, in order."""
    chain = list(DEFAULT_RULES)
    config = options.get("traditional_to_simplified")
    if config:
        chain.insert(chain.index("strip"), f"opencc_{config}")
    if options.get("fullwidth_ascii"):
        chain.insert(chain.index("strip"), "fullwidth_ascii")
    if options.get("cjk_spaces"):
        chain.insert(chain.index("strip"), "cjk_spaces")
    if options.get("separator_lines"):
        chain.insert(chain.index("strip"), f"separator_lines_{options['separator_lines']}")
    return tuple(chain)


def normalize_text(text: str, chain: tuple[str, ...]) -> tuple[str, list[str]]:
    """Apply `chain` to `text`; return the result and the rules that changed it."""
    changed = []
    invisible = None
    for name in chain:
        if name in INVISIBLE_RULES:
            # One search says whether any of the three has work to do (most texts: none of them).
            if invisible is None:
                invisible = _INVISIBLE.search(text) is not None
            if not invisible:
                continue
        new = RULES[name](text)
        if new != text:
            changed.append(name)
            text = new
    return text, changed
