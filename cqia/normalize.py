"""Chinese-safe text normalisation (pure functions on strings).

What it does, in order, to instruction, input and output:
  newlines        CRLF, CR, U+2028 and U+2029 -> "\\n"
  nfc             Unicode NFC (not NFKC: NFKC would turn CJK punctuation
                  such as "，" and "：" into ASCII)
  control         C0/C1 control characters except "\\n" and "\\t" removed
  zero_width      U+200B, U+200C, U+2060, U+FEFF removed; U+200D (ZWJ) kept
                  only inside emoji sequences
  fullwidth_ascii (option) full-width letters and digits -> ASCII, U+3000 ->
                  " "; full-width and CJK punctuation are kept
  strip           leading and trailing white space removed

Each rule is named so that the lineage can say which rules changed a field.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

_NEWLINES = re.compile("\r\n|[\r\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u2060\ufeff]")
_ZWJ = "\u200d"
# Full-width letters and digits only; punctuation in FF01-FF5E is left alone.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)}
_FULLWIDTH.update({cp: cp - 0xFEE0 for cp in range(0xFF21, 0xFF3B)})
_FULLWIDTH.update({cp: cp - 0xFEE0 for cp in range(0xFF41, 0xFF5B)})
_FULLWIDTH[0x3000] = 0x20


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


RULES: dict[str, Callable[[str], str]] = {
    "newlines": lambda s: _NEWLINES.sub("\n", s),
    "nfc": lambda s: s if s.isascii() else unicodedata.normalize("NFC", s),
    "control": lambda s: _CONTROL.sub("", s),
    "zero_width": _zero_width,
    "fullwidth_ascii": lambda s: s.translate(_FULLWIDTH),
    "strip": lambda s: s.strip(),
}
DEFAULT_RULES = ("newlines", "nfc", "control", "zero_width", "strip")
OPTIONAL_RULES = ("fullwidth_ascii",)


def rule_chain(options: dict) -> tuple[str, ...]:
    """The rules to run for a category's `normalize` options, in order."""
    chain = list(DEFAULT_RULES)
    if options.get("fullwidth_ascii"):
        chain.insert(chain.index("strip"), "fullwidth_ascii")
    return tuple(chain)


def normalize_text(text: str, chain: tuple[str, ...]) -> tuple[str, list[str]]:
    """Apply `chain` to `text`; return the result and the rules that changed it."""
    changed = []
    for name in chain:
        new = RULES[name](text)
        if new != text:
            changed.append(name)
            text = new
    return text, changed
