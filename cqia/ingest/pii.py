"""Personal information in Chinese text: find it, then mask it or reject the record.

Kinds (each a compiled pattern; a category chooses per kind `mask`, `reject`
or `keep` in `rules.pii`):

  email     user@example.com
  phone     mainland mobile numbers (1[3-9]x, 11 digits, optionally +86 and
            separated 3-4-4) and landlines with an area code (010-12345678)
  id_card   18-character 居民身份证号 whose date is a real month/day and whose
            ISO 7064 MOD 11-2 check character is right (a random 18-digit
            number is not masked)
  qq        a 5-11 digit number right after "QQ", "QQ号", "QQ號", "扣扣" (a
            bare number is not a QQ number)

Kinds are searched in this order, and each on the text the previous ones
masked, so the digits of 13812345678@163.com are masked once, as an e-mail.

The patterns read ASCII. A text is searched in one reading, whatever its
category's `normalize` options: full-width letters, digits and ＠．＋－＿％
read as ASCII, U+3000 as a space, and control, zero-width and bidi characters
are skipped (so "wang＠example．com", "１３８１２３４５６７８" and
"138\u200b1234\u200b5678" are found). What is found is masked in the text as
it was written: the span's own characters become the token, and the rest of
the text (full-width punctuation, letters elsewhere) is left as it was.

`scan` judges a record's normalised text (mask, or the first find of a kind
to reject on); `redact` is `scan` with every kind masked, for the texts the
lineage carries, which include the raw record as it came. A record and its
lineage therefore read the same PII.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import NamedTuple

from cqia.common.pii_kinds import ACTIONS, KINDS, LABELS, MASKS  # noqa: F401  (re-exported: pii.LABELS, ...)

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![A-Za-z0-9])")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
                      r"[0-9]{3}[0-9Xx](?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<![0-9+])(?:(?:\+|00)?86[- ]?)?1[3-9][0-9](?:-[0-9]{4}-[0-9]{4}| [0-9]{4} [0-9]{4}|[0-9]{8})"
                    r"(?![0-9])|(?<![0-9-])0[0-9]{2,3}-[0-9]{7,8}(?![0-9-])")
_QQ = re.compile(r"(?i)(?:QQ|扣扣)(?:号码|號碼|号|號)?\s*[:：]?\s*([1-9][0-9]{4,10})(?![0-9])")
_PATTERNS = {"email": _EMAIL, "id_card": _ID_CARD, "phone": _PHONE, "qq": _QQ}
_DIGITS = re.compile("[0-9][0-9][0-9]")    # every kind but e-mail has 3 ASCII digits in a row ([0-9]{3}: 3x slower)
# What each pattern cannot match without: a search that starts with a character class is a fast
# scan, where the patterns' leading look-behinds make sre try every position (the phone pattern
# costs ~50 ns a character).
_NEEDS = {"email": re.compile("@"), "id_card": re.compile("[1-9][0-9]{16}"),
          "phone": re.compile("1[3-9][0-9][- ]?[0-9]{4}|0[0-9]{2,3}-[0-9]{7}"), "qq": re.compile("[Qq扣][Qq扣]")}

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_card_checksum_ok(number: str) -> bool:
    """True if the 18th character of a 身份证号 is its ISO 7064 MOD 11-2 check character."""
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == number[17].upper()


class Found(NamedTuple):
    kind: str
    start: int          # character offset in the text given to `scan`


def _spans(kind: str, text: str) -> list[tuple[int, int]]:
    if not _NEEDS[kind].search(text):
        return []
    spans = []
    for m in _PATTERNS[kind].finditer(text):
        if kind == "id_card" and not id_card_checksum_ok(m.group()):
            continue
        spans.append(m.span(1) if kind == "qq" else m.span())
    return spans


# --- the reading: what the patterns search ------------------------------------------

# The full-width forms of what the patterns read (letters, digits, @ . + - _ %) and U+3000, one
# character each way: the text's offsets stay valid. Other full-width punctuation (，：) is left.
_WIDE = re.compile("[\u3000\uff05\uff0b\uff0d\uff0e\uff10-\uff19\uff20-\uff3a\uff3f\uff41-\uff5a]")
# Characters normalisation removes (control, zero-width) and bidi controls: skipped, so that
# "138\u200b1234 5678" reads as a phone number.
_HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069]")
_FOLDED = re.compile(_WIDE.pattern[:-1] + _HIDDEN.pattern[1:])      # either of the two
# What any kind needs, in any width: an @ (e-mail), 3 + 4 digits (phone numbers and 身份证号 have
# them, "138 1234", "010-1234"), QQ or 扣扣; or a hidden character, which can split anything. One
# search that starts with a character class, so sre skips other characters fast (~2 ns each; the
# kinds' own patterns start with look-behinds, tried at every character).
_D, _Q = "[0-9\uff10-\uff19]", "[Qq\uff31\uff51]"
_MAY_HOLD = re.compile(f"[@\uff20{_HIDDEN.pattern[1:-1]}0-9\uff10-\uff19Qq\uff31\uff51扣]"
                       f"(?:(?<=[@\uff20{_HIDDEN.pattern[1:-1]}])|(?<={_Q}){_Q}|(?<=扣)扣"
                       f"|(?<={_D}){_D}{{2}}[- \u3000\uff0d]?{_D}{{4}})")
_GAP = "\x00"          # fills a found span while later kinds are searched: matches no pattern, as a token does


def _narrow(match: re.Match) -> str:
    ch = match.group()
    return " " if ch == "\u3000" else chr(ord(ch) - 0xFEE0)


def _reading(text: str) -> tuple[str, list[int]]:
    """The text as the patterns should read it, and where it skipped characters: view index
    j is text index j + bisect_right(skips, j)."""
    view = _WIDE.sub(_narrow, text)
    hidden = [m.start() for m in _HIDDEN.finditer(view)]
    if not hidden:
        return view, hidden
    return _HIDDEN.sub("", view), [at - k for k, at in enumerate(hidden)]


def may_hold(text: str) -> bool:
    """False if `scan` and `redact` would find nothing in `text` (for any kinds): a cheap test for the common case."""
    return _MAY_HOLD.search(text) is not None


def scan(text: str, kinds: tuple[str, ...], mask: frozenset[str]) -> tuple[str, list[str], Found | None]:
    """Search `text` for `kinds` in order, in the reading `_reading` gives; mask the kinds in `mask`.

    Returns the text with every span of a masked kind replaced by its mask
    token (the original characters of the span, whatever width they were
    written in; the rest of the text as it was), the kinds masked, and the
    first find of a kind not in `mask` (a kind to reject on), or None; on a
    find, the text has only the masks of the kinds searched before it. Each
    kind is searched with the earlier kinds' spans blanked, and the kinds
    again until a round finds nothing: a mask can free a span an earlier
    kind's pattern did not take (in "a@b.com13812345678" the e-mail ends
    only where the phone number's span starts).
    """
    if not _MAY_HOLD.search(text):
        return text, [], None
    view, skips = _reading(text) if _FOLDED.search(text) else (text, [])
    found: list[tuple[int, int, str]] = []
    masked: list[str] = []
    again = True
    while again:
        again = False
        for kind in kinds:
            if (kind == "email" and "@" not in view) or (kind != "email" and not _DIGITS.search(view)):
                continue
            spans = _spans(kind, view)
            if not spans:
                continue
            if kind not in mask:
                return _masked(text, found, skips), _in_order(kinds, masked), Found(kind, _at(spans[0][0], skips))
            if kind not in masked:
                masked.append(kind)
            parts, last = [], 0
            for start, end in spans:
                parts += [view[last:start], _GAP * (end - start)]
                last = end
                found.append((start, end, kind))
            parts.append(view[last:])
            view = "".join(parts)
            again = True
    return _masked(text, found, skips), _in_order(kinds, masked), None


def redact(text: str, kinds: tuple[str, ...]) -> tuple[str, list[str]]:
    """Replace every span of `kinds` in `text` by its mask token, in whatever width the text writes it.

    Returns the text and the kinds it replaced: `scan` with every kind masked.
    """
    new, replaced, _ = scan(text, kinds, frozenset(kinds))
    return new, replaced


def _at(index: int, skips: list[int]) -> int:
    """The text index of view index `index` (see `_reading`)."""
    return index + bisect_right(skips, index) if skips else index


def _masked(text: str, found: list[tuple[int, int, str]], skips: list[int]) -> str:
    """`text` with each found view span replaced by its kind's token; a hidden character inside a span goes with it."""
    if not found:
        return text
    parts, last = [], 0
    for start, end, kind in sorted(found):
        start, end = _at(start, skips), _at(end - 1, skips) + 1
        parts += [text[last:start], MASKS[kind]]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _in_order(kinds: tuple[str, ...], found: list[str]) -> list[str]:
    return [k for k in kinds if k in found]
