"""Personal information in Chinese text: find it, then mask it or reject the record.

Kinds (each a compiled pattern; a category chooses per kind `mask`, `reject`
or `keep` in `rules.pii`):

  email     user@example.com
  phone     mainland mobile numbers (1[3-9]x, 11 digits, optionally +86 and
            separated 3-4-4) and landlines with an area code (010-12345678)
  id_card   18-character 居民身份证号 whose date is a real month/day and whose
            ISO 7064 MOD 11-2 check character is right (a random 18-digit
            number is not masked)
  qq        a 5-11 digit number right after "QQ", "QQ号", "扣扣" (a bare
            number is not a QQ number)

Kinds are searched in this order, and each on the text the previous ones
masked, so the digits of 13812345678@163.com are masked once, as an e-mail.
"""

from __future__ import annotations

import re
from typing import NamedTuple

KINDS = ("email", "id_card", "phone", "qq")
ACTIONS = ("mask", "reject", "keep")
MASKS = {"email": "[EMAIL]", "id_card": "[ID_CARD]", "phone": "[PHONE]", "qq": "[QQ]"}
LABELS = {"email": "an e-mail address", "id_card": "a 身份证号", "phone": "a phone number", "qq": "a QQ number"}

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![A-Za-z0-9])")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
                      r"[0-9]{3}[0-9Xx](?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<![0-9+])(?:(?:\+|00)?86[- ]?)?1[3-9][0-9](?:-[0-9]{4}-[0-9]{4}| [0-9]{4} [0-9]{4}|[0-9]{8})"
                    r"(?![0-9])|(?<![0-9-])0[0-9]{2,3}-[0-9]{7,8}(?![0-9-])")
_QQ = re.compile(r"(?i)(?:QQ|扣扣)(?:号码|号)?\s*[:：]?\s*([1-9][0-9]{4,10})(?![0-9])")
_PATTERNS = {"email": _EMAIL, "id_card": _ID_CARD, "phone": _PHONE, "qq": _QQ}
_DIGITS = re.compile("[0-9]{3}")           # every kind but e-mail has 3 ASCII digits in a row

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_card_checksum_ok(number: str) -> bool:
    """True if the 18th character of a 身份证号 is its ISO 7064 MOD 11-2 check character."""
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == number[17].upper()


class Found(NamedTuple):
    kind: str
    start: int          # character offset in the text the kind was searched in


def _spans(kind: str, text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _PATTERNS[kind].finditer(text):
        if kind == "id_card" and not id_card_checksum_ok(m.group()):
            continue
        spans.append(m.span(1) if kind == "qq" else m.span())
    return spans


def scan(text: str, kinds: tuple[str, ...], mask: frozenset[str]) -> tuple[str, list[str], Found | None]:
    """Search `text` for `kinds` in order; mask the kinds in `mask`.

    Returns the (masked) text, the kinds that were masked, and the first
    unmasked find (a kind to reject on), or None.
    """
    masked: list[str] = []
    has_at = "@" in text
    has_digits = _DIGITS.search(text) is not None
    if not (has_at or has_digits):
        return text, masked, None
    for kind in kinds:
        if kind == "email" and not has_at:
            continue
        if kind != "email" and not has_digits:
            continue
        spans = _spans(kind, text)
        if not spans:
            continue
        if kind not in mask:
            return text, masked, Found(kind, spans[0][0])
        token = MASKS[kind]
        parts, last = [], 0
        for start, end in spans:
            parts.append(text[last:start])
            parts.append(token)
            last = end
        parts.append(text[last:])
        text = "".join(parts)
        masked.append(kind)
    return text, masked, None
