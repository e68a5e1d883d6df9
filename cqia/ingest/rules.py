"""Quality rules: pure checks that keep a record or drop it with a reason code.

A category's `rules` in params.yaml are data (thresholds and switches), merged
over params' `rule_defaults` (cqia/common/params.py); `RuleSet(cfg)` checks and
compiles them once, and its methods judge one record at a time. A knob that is
absent switches its rule off. The first rule that fires decides the reason.
docs/rules.md has each rule's reasoning and its measured precision and recall.
In the order they run:

  before normalisation (on the text as it came)
    max_invisible_ratio: r     invisible_chars     more than a share r of a field's characters are
                                                   control, zero-width or bidi characters (fewer are
                                                   removed by normalisation, a lineage step)
    mojibake: true             mojibake            U+FFFD, or UTF-8 that was decoded as GBK ("浣犲ソ");
                                                   the detail quotes the raw text
  PII (after normalisation, read in any width; see cqia/ingest/pii.py)
    pii: {kind: reject}        pii                 an e-mail, phone, 身份证号 or QQ number
    pii: {kind: mask}          -                   replaced by [EMAIL], [PHONE], ... (a lineage step)
  after normalisation and masking
    (always)                   empty_instruction, empty_output
    (always)                   output_equals_instruction   the same text, up to punctuation,
                                                   spacing, letter case and full width
    echo_min_new_chars: N      output_echoes_instruction   the output (at most 4x as long as the
                                                   instruction) repeats it and adds fewer than
                                                   N letters or digits
    min_chars / max_chars      too_short, too_long         per field
    min_cjk_ratio              low_cjk_ratio       Han characters / (Han characters + words and
                                                   letters of other scripts), per field, over its
                                                   prose: fenced and inline code and TeX maths
                                                   are left out
    max_char_repeats: N        repeated_chars      a unit of 1-4 characters, with a letter or an
                                                   emoji, repeated more than N times in a row
                                                   ("哈哈哈…", "好的好的…", "我爱你我爱你…";
                                                   not "-----" or "|---|---|…")
    max_dup_line_frac: r       repeated_lines      Gopher's fractions, per field: the lines that
    max_dup_line_char_frac: r                      repeat an earlier line, and the characters in
    dup_line_min_chars: N                          them; lines with fewer than N letters or digits
                                                   (headings, list markers, emoji) never count as
                                                   repeats

`task_types: {name: {knob: value}}` overrides thresholds for records whose
task_type (major or minor) names `name`: the first entry that matches wins.
This is how a category gives multiple-choice answers a lower `min_chars`.

Everything a rule needs per record is compiled here once (regexes, merged
thresholds), so judging a record allocates little.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from cqia.common.errors import CqiaError
from cqia.common.lineage import edit_step
from cqia.common.pii_kinds import PII_FIELDS
from cqia.common.record import TEXT_FIELDS
from cqia.ingest import pii

Verdict = tuple[str, str] | None
# PII is looked for in every free-text string of a record: the texts, and the notes upstream puts in
# `metadata` (a source URL with a contact address, say) and `copyright` ("联系作者 a@b.cn").

# Every reason code a raw record can be rejected with, whatever rejects it (parse, rules, review,
# schema, dedup); `duplicate_of` and `near_duplicate_of` carry `:<id>` in the record's reason.
REASONS = (
    "invalid_utf8", "invalid_json", "not_an_object", "missing_field",
    "invisible_chars", "pii",
    "empty_instruction", "empty_output", "mojibake", "output_equals_instruction", "output_echoes_instruction",
    "too_short", "too_long", "low_cjk_ratio", "repeated_chars", "repeated_lines",
    "review_rejected", "review_pending", "schema_invalid", "duplicate_of", "near_duplicate_of",
)

# --- character classes ---------------------------------------------------------

_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069]")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# One unit per word of a Latin, Greek or Cyrillic script, one per kana or hangul syllable. A single
# letter is not a word of another language but a variable or a label ("(a+b)² 的展开", "选 B"):
# words have two letters or more.
_FOREIGN = re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff\uff21-\uff3a\uff41-\uff5a]{2,}"
                      "|[\u3040-\u30ff\uac00-\ud7af]")
_NOT_WORD = re.compile(r"[\W_]+")
ECHO_MAX_TIMES = 4

# What the CJK ratio leaves out: code and maths are not prose, whatever script the question is in.
# Fenced code runs to its closing fence (or the end of the text: a truncated answer); inline maths
# follows pandoc's rule (no space inside the dollars, no digit after the closing one), so "$5 和 $10"
# stays prose.
_CODE_OR_MATHS = re.compile(
    r"```.*?(?:```|\Z)"                                 # fenced code
    r"|`[^`\n]+`"                                       # inline code
    r"|\$\$.+?\$\$"                                     # display maths
    r"|\\\[.+?\\\]|\\\(.+?\\\)"                         # \[ ... \], \( ... \)
    r"|\\begin\{([A-Za-z]+\*?)\}.*?\\end\{\1\}"          # an environment without dollars
    r"|\$(?![\s$])(?:[^$\\\n]|\\.)+?(?<![\s\\])\$(?!\d)",  # inline maths
    re.S)


# --- mojibake: UTF-8 bytes that were decoded as GBK ----------------------------
#
# UTF-8 writes a CJK character as three bytes, a lead byte E0-EF and two
# continuation bytes 80-BF. A GBK decoder reads those bytes in pairs, so the
# garbled text always contains characters whose GBK code is a UTF-8 lead byte
# followed by a continuation byte (浣 = E4 BD). Those 1,024 characters are the
# cheap prefilter. The proof is the round trip: encode the suspect runs back
# to GBK and count the bytes that form valid 3-byte UTF-8 sequences. Garbled
# text is made of nothing else; normal Chinese, simplified or traditional, has
# a few by chance (at most 6 of 10 bytes in a 5-character run, 9 of 64 in a
# long one, over 80,000 zh_CN/zh_TW strings).

def _suspects() -> frozenset[str]:
    chars = set()
    for lead in range(0xE0, 0xF0):
        for trail in range(0x80, 0xC0):
            try:
                chars.add(bytes((lead, trail)).decode("gbk"))
            except UnicodeDecodeError:
                pass
    return frozenset(chars)


_SUSPECTS = _suspects()
_HAS_SUSPECT = re.compile("[" + "".join(sorted(_SUSPECTS)) + "]")      # ~8x faster than frozenset.isdisjoint
_NON_ASCII_RUN = re.compile("[^\x00-\x7f\ufffd]{2,}")
_UTF8_CJK = re.compile(rb"[\xe0-\xef][\x80-\xbf][\x80-\xbf]")


def gbk_mojibake(text: str) -> tuple[str, str] | None:
    """(a garbled run, what it reads as) if `text` holds UTF-8 that was decoded as GBK, else None.

    Garbled: at least 2 recovered characters making up 80% of the suspect
    runs' bytes, or at least 3 making up half (a run cut short by a lost byte
    still counts).
    """
    if not _HAS_SUSPECT.search(text):
        return None
    good = total = best = 0
    example = ""
    for m in _NON_ASCII_RUN.finditer(text):
        run = m.group()
        if _SUSPECTS.isdisjoint(run):
            continue
        data = run.encode("gbk", "replace")
        found = 3 * len(_UTF8_CJK.findall(data))
        good += found
        total += len(data)
        if found > best:
            best, example = found, run
    if (good >= 9 and 2 * good >= total) or (good >= 6 and 5 * good >= 4 * total):
        run = example[:12]
        reads = run.encode("gbk", "replace").decode("utf-8", "replace")
        shown = reads.split("\ufffd")[0] or reads
        return run, shown if shown == reads else shown + "…"
    return None


# --- repeated units: the prefilter ----------------------------------------------
#
# A unit of k characters repeated r times in a row is a stretch where
# s[i] == s[i + k] for (r - 1) * k positions in a row; then also s[i] == s[i + S]
# for r * k - S positions, for any S that k divides. The regexes that find the
# repeats ((.)\1{N,} ... (.{4})\1{N,}) are tried at every position: ~2.5 us each
# on a 200-character field, twelve searches for four unit lengths and three fields. The
# prefilter does the comparison in C instead: the field as UTF-32 is one big
# integer, and XOR with itself shifted by S characters is zero exactly where a
# character equals the one S further on, so a long enough run of zero bytes
# (bytes.find) is a necessary condition. One shift serves two unit lengths:
# S = 2 for units of 1 and 2, S = 12 for units of 3 and 4. Normal text almost
# never passes it (a separator line or a long number does, and the regex then
# looks from there on: a match cannot start before the first zero run).

REPEAT_SHIFTS = ((2, (1, 2)), (12, (3, 4)))        # (shift S, the unit lengths it serves), shortest unit first


@dataclass(frozen=True)
class Probe:
    """One shift of the prefilter, for a threshold `max_char_repeats`."""

    bits: int           # the shift, in bits of UTF-32
    zeros: bytes        # the zero bytes a repeat must leave; b"" if the threshold is too low to tell
    min_len: int        # the shortest field that can hold a repeat of these unit lengths

    @classmethod
    def of(cls, shift: int, units: tuple[int, ...], most: int) -> Probe:
        positions = min((most + 1) * k - shift for k in units)      # r = most + 1 repeats of a unit of k
        return cls(32 * shift, bytes(4 * max(positions, 0)), (most + 1) * min(units))


def _candidates(value: str, probes: tuple[Probe, ...]) -> list[int | None] | None:
    """Per probe, where a repeat can start at the earliest (a character index), or None if nowhere;
    None if a repeat can start nowhere at all (the common case)."""
    starts: list[int | None] = []
    number = None
    for probe in probes:
        if len(value) < probe.min_len:
            starts.append(None)
        elif not probe.zeros:
            starts.append(0)
        else:
            if number is None:
                number = int.from_bytes(value.encode("utf-32-le", "surrogatepass"), "little")
            at = ((number >> probe.bits) ^ number).to_bytes(4 * len(value), "little").find(probe.zeros)
            starts.append(at // 4 if at >= 0 else None)
    return starts if starts.count(None) < len(starts) else None


# --- configuration ---------------------------------------------------------------

FIELD_KNOBS = ("min_chars", "max_chars", "min_cjk_ratio")
NUMBER_KNOBS = ("echo_min_new_chars", "max_char_repeats")
LINE_KNOBS = ("max_dup_line_frac", "max_dup_line_char_frac", "dup_line_min_chars")
OVERRIDABLE = FIELD_KNOBS + NUMBER_KNOBS + LINE_KNOBS
KNOBS = OVERRIDABLE + ("max_invisible_ratio", "mojibake", "pii", "task_types")
# Knobs that were replaced: params that still name one fail, naming what replaced it.
REPLACED = {
    "max_line_repeats": "max_dup_line_frac, max_dup_line_char_frac and dup_line_min_chars",
    "max_invisible_chars": "max_invisible_ratio",
}


@dataclass(frozen=True)
class Limits:
    """The thresholds that apply to one record (a category's, or a task type's override)."""

    min_chars: tuple[tuple[str, int], ...] = ()
    max_chars: tuple[tuple[str, int], ...] = ()
    min_cjk_ratio: tuple[tuple[str, float], ...] = ()
    echo_min_new_chars: int | None = None
    max_char_repeats: int | None = None
    max_dup_line_frac: float | None = None
    max_dup_line_char_frac: float | None = None
    dup_line_min_chars: int = 0
    repeats: tuple[tuple[re.Pattern, int], ...] = ()     # per unit length: its regex, its probe's index
    probes: tuple[Probe, ...] = ()

    @property
    def repeated_lines(self) -> bool:
        return self.max_dup_line_frac is not None or self.max_dup_line_char_frac is not None


def _field_map(value: Any, knob: str, where: str, ratio: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CqiaError("must be a mapping of field to threshold", where=f"{where}.{knob}",
                        fix=f"e.g. {knob}: {{output: {0.3 if ratio else 10}}}")
    for field, limit in value.items():
        if field not in TEXT_FIELDS:
            raise CqiaError(f"unknown field {field!r}", where=f"{where}.{knob}", fix=f"Use {list(TEXT_FIELDS)}")
        if limit is None:
            continue
        ok = (isinstance(limit, (int, float)) and 0 <= limit <= 1) if ratio else isinstance(limit, int)
        if isinstance(limit, bool) or not ok or limit < 0:
            raise CqiaError(f"{limit!r} is not a {'ratio between 0 and 1' if ratio else 'whole number >= 0'}",
                            where=f"{where}.{knob}.{field}")
    return dict(value)


def _count(value: Any, knob: str, where: str, low: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise CqiaError(f"{value!r} is not a whole number >= {low}", where=f"{where}.{knob}")
    return value


def _ratio(value: Any, knob: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise CqiaError(f"{value!r} is not a ratio between 0 and 1", where=f"{where}.{knob}")
    return float(value)


def _limits(cfg: dict[str, Any], where: str, base: Limits | None = None) -> Limits:
    base = base or Limits()
    changes: dict[str, Any] = {}
    for knob in FIELD_KNOBS:
        if knob in cfg:
            merged = dict(getattr(base, knob))
            merged.update(_field_map(cfg[knob], knob, where, ratio=knob == "min_cjk_ratio"))
            changes[knob] = tuple((f, v) for f, v in merged.items() if v is not None)
    for knob in NUMBER_KNOBS:
        if knob in cfg:
            changes[knob] = _count(cfg[knob], knob, where)
    for knob in ("max_dup_line_frac", "max_dup_line_char_frac"):
        if knob in cfg:
            changes[knob] = _ratio(cfg[knob], knob, where)
    if "dup_line_min_chars" in cfg:
        changes["dup_line_min_chars"] = _count(cfg["dup_line_min_chars"], "dup_line_min_chars", where, low=0) or 0
    limits = replace(base, **changes)
    most = limits.max_char_repeats
    if not most:
        return replace(limits, repeats=(), probes=())
    return replace(limits, repeats=tuple((re.compile(r"(?s)(.{%d})\1{%d,}" % (k, most)), group)
                                         for group, (_, units) in enumerate(REPEAT_SHIFTS) for k in units),
                   probes=tuple(Probe.of(shift, units, most) for shift, units in REPEAT_SHIFTS))


def _check_keys(keys: Any, allowed: tuple[str, ...], where: str, per_task_type: bool = False) -> None:
    for key in keys:
        if key in REPLACED:
            raise CqiaError(f"{key} was replaced by {REPLACED[key]} (docs/rules.md)", where=where,
                            fix=f"Available keys: {list(allowed)}")
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        what = f"key(s) {unknown} cannot be set per task type" if per_task_type else f"unknown key(s) {unknown}"
        raise CqiaError(what, where=where, fix=f"Available keys: {list(allowed)}")


class RuleSet:
    """A category's rules, checked and compiled from its `rules` params."""

    def __init__(self, cfg: dict[str, Any] | None, where: str = "rules"):
        cfg = cfg or {}
        if not isinstance(cfg, dict):
            raise CqiaError("must be a mapping", where=where)
        _check_keys(cfg, KNOBS, where)
        self.base = _limits(cfg, where)
        self.max_invisible = _ratio(cfg.get("max_invisible_ratio"), "max_invisible_ratio", where)
        self.mojibake = cfg.get("mojibake", False)
        if not isinstance(self.mojibake, bool):
            raise CqiaError(f"must be true or false, not {self.mojibake!r}", where=f"{where}.mojibake")
        pii_cfg = cfg.get("pii") or {}
        if not isinstance(pii_cfg, dict):
            raise CqiaError("must be a mapping of kind to action", where=f"{where}.pii",
                            fix="e.g. pii: {email: mask, id_card: reject}")
        for kind, action in pii_cfg.items():
            if kind not in pii.KINDS:
                raise CqiaError(f"unknown kind {kind!r}", where=f"{where}.pii", fix=f"Use {list(pii.KINDS)}")
            if action not in pii.ACTIONS:
                raise CqiaError(f"unknown action {action!r}", where=f"{where}.pii.{kind}",
                                fix=f"Use one of {list(pii.ACTIONS)}")
        self.pii_kinds = tuple(k for k in pii.KINDS if pii_cfg.get(k, "keep") != "keep")
        self.pii_mask = frozenset(k for k in self.pii_kinds if pii_cfg[k] == "mask")
        overrides = cfg.get("task_types") or {}
        if not isinstance(overrides, dict):
            raise CqiaError("must be a mapping of task type to thresholds", where=f"{where}.task_types",
                            fix="e.g. task_types: {选择题: {min_chars: {output: 1}}}")
        self.by_task_type: dict[str, Limits] = {}
        for name, override in overrides.items():
            at = f"{where}.task_types.{name}"
            if not isinstance(override, dict):
                raise CqiaError("must be a mapping", where=at)
            _check_keys(override, OVERRIDABLE, at, per_task_type=True)
            self.by_task_type[str(name)] = _limits(override, at, self.base)
        self._rank = {name: rank for rank, name in enumerate(self.by_task_type)}       # params order: first wins
        self._ranked = list(self.by_task_type.values())

    # --- the three phases -------------------------------------------------------

    def before_normalise(self, rec: dict[str, Any]) -> Verdict:
        """The rules that read the text as it came: invisible characters (normalisation removes
        them) and mojibake (whose detail quotes the raw text, before t2s rewrites it)."""
        if self.max_invisible is not None:
            for field in TEXT_FIELDS:
                value = rec.get(field)
                if isinstance(value, str) and _INVISIBLE.search(value):
                    count = len(_INVISIBLE.findall(value))
                    if count > self.max_invisible * len(value):
                        return ("invisible_chars", f"{field}: {count} of its {len(value)} characters "
                                f"({count / len(value):.0%}) are control, zero-width or bidi characters, "
                                f"max_invisible_ratio is {self.max_invisible}")
        if self.mojibake:
            for field in TEXT_FIELDS:
                value = rec.get(field)
                if not isinstance(value, str) or value.isascii():
                    continue
                if "\ufffd" in value:
                    return ("mojibake", f"{field} has U+FFFD (the replacement character) at character "
                            f"{value.index(chr(0xFFFD)) + 1}: it was decoded with the wrong encoding upstream")
                garbled = gbk_mojibake(value)
                if garbled:
                    return ("mojibake", f"{field} has UTF-8 text that was decoded as GBK: "
                            f"{garbled[0]!r} reads {garbled[1]!r}")
        return None

    def mask_pii(self, rec: dict[str, Any]) -> tuple[list[dict[str, Any]], Verdict]:
        """Mask PII in place; return the lineage steps of the masks, or the reject."""
        steps: list[dict[str, Any]] = []
        if not self.pii_kinds:
            return steps, None
        for field in PII_FIELDS:
            value = rec.get(field)
            if not isinstance(value, str) or not value:
                continue
            new, masked, found = pii.scan(value, self.pii_kinds, self.pii_mask)
            if found:
                return steps, ("pii", f"{field} contains {pii.LABELS[found.kind]} at character {found.start + 1} "
                               f"(pii.{found.kind} is reject)")
            if masked:
                steps.append(edit_step("mask", field, masked, value, new))
                rec[field] = new
        return steps, None

    def limits_for(self, rec: dict[str, Any]) -> Limits:
        """The category's limits, or those of the first `task_types` entry the record's major or minor names."""
        if self.by_task_type:
            task_type = rec.get("task_type")
            if isinstance(task_type, dict):
                first = None
                for key in ("major", "minor"):
                    value = task_type.get(key)
                    if isinstance(value, list):
                        for name in value:
                            rank = self._rank.get(name) if isinstance(name, str) else None
                            if rank is not None and (first is None or rank < first):
                                first = rank
                if first is not None:
                    return self._ranked[first]
        return self.base

    def check(self, rec: dict[str, Any]) -> Verdict:
        ins, out = rec.get("instruction"), rec.get("output")
        for field, value in (("instruction", ins), ("output", out)):
            if isinstance(value, str) and not value:
                return f"empty_{field}", f"{field} is empty after normalisation"
        fields = [(f, rec[f]) for f in TEXT_FIELDS if isinstance(rec.get(f), str)]
        limits = self.limits_for(rec)
        if isinstance(ins, str) and isinstance(out, str):
            verdict = _echo(ins, out, limits.echo_min_new_chars)
            if verdict:
                return verdict
        values = dict(fields)
        for field, low in limits.min_chars:
            value = values.get(field)
            if value is not None and len(value) < low:
                return "too_short", f"{field} has {len(value)} characters, min_chars.{field} is {low}"
        for field, high in limits.max_chars:
            value = values.get(field)
            if value is not None and len(value) > high:
                return "too_long", f"{field} has {len(value)} characters, max_chars.{field} is {high}"
        for field, low in limits.min_cjk_ratio:
            value = values.get(field)
            if value and low > 0:
                verdict = _cjk_ratio(field, value, low)
                if verdict:
                    return verdict
        if limits.repeats:
            verdict = _repeated_chars(fields, limits)
            if verdict:
                return verdict
        if limits.repeated_lines:
            for field, value in fields:
                if "\n" in value:
                    verdict = _repeated_lines(field, value, limits)
                    if verdict:
                        return verdict
        return None


def _key(text: str) -> str:
    """What echo compares: letters and digits only, NFKC (ＡＩ = AI) and case-folded."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text)).casefold()


def _repeated_chars(fields: list[tuple[str, str]], limits: Limits) -> Verdict:
    """The shortest unit first (a run of 好的 is also a run of 好的好的), in field order."""
    # The fields joined pass the prefilter if any field does: one probe per record in the common case.
    if _candidates("".join(value for _, value in fields), limits.probes) is None:
        return None
    starts = [_candidates(value, limits.probes) for _, value in fields]
    for pattern, group in limits.repeats:
        for (field, value), at in zip(fields, starts):
            if at is None or at[group] is None:
                continue
            m = pattern.search(value, at[group])
            while m and not _spam_unit(m.group(1)):
                m = pattern.search(value, m.end())
            if m:
                unit = m.group(1)
                return ("repeated_chars", f"{field} repeats {unit!r} {len(m.group()) // len(unit)} times in a "
                        f"row, max_char_repeats is {limits.max_char_repeats}")
    return None


def _spam_unit(unit: str) -> bool:
    """A repeated unit is spam if it has a letter (any script) or an emoji: separators
    ("----------", "|---|---|"), indentation and long numbers are not."""
    return any(ch.isalpha() or ord(ch) >= 0x1F000 or 0x2600 <= ord(ch) <= 0x27BF for ch in unit)


def _echo(ins: str, out: str, min_new: int | None) -> Verdict:
    if out == ins:
        return "output_equals_instruction", "output is the instruction repeated"
    if len(out) > ECHO_MAX_TIMES * len(ins) + 2 * (min_new or 0):
        return None                             # too long to be the instruction up to punctuation, or an echo
    ins_key = _key(ins)
    if not ins_key:
        return None
    out_key = _key(out)
    if out_key == ins_key:
        return "output_equals_instruction", "output is the instruction up to punctuation, spacing, letter case and full width"
    if min_new and ins_key in out_key:
        new = len(out_key.replace(ins_key, ""))
        if new < min_new:
            return ("output_echoes_instruction", f"output repeats the instruction and adds {new} characters, "
                    f"echo_min_new_chars is {min_new}")
    return None


def prose(text: str) -> str:
    """`text` without its fenced and inline code and its TeX maths (each span becomes a space)."""
    if "`" not in text and "$" not in text and "\\" not in text:
        return text
    return _CODE_OR_MATHS.sub(" ", text)


def _cjk_ratio(field: str, value: str, low: float) -> Verdict:
    text = prose(value)
    foreign = len(_FOREIGN.findall(text))
    if not foreign:
        return None                             # no other script, or only in code and maths
    if low < 1:
        # han / (han + foreign) >= low  <=>  han >= low * foreign / (1 - low): stop counting there
        enough = math.ceil(low * foreign / (1 - low) - 1e-9)
        if sum(1 for _ in islice(_HAN.finditer(text), enough)) >= enough:
            return None
    han = len(_HAN.findall(text))
    ratio = han / (han + foreign)
    if ratio < low:
        chars = len("".join(text.split()))
        return ("low_cjk_ratio", f"{field}: {math.floor(ratio * 100)}% CJK over {chars} prose characters "
                f"({han} Han characters, {foreign} words or letters of other scripts; code and maths excluded), "
                f"min_cjk_ratio.{field} is {low}")
    return None


def _repeated_lines(field: str, value: str, limits: Limits) -> Verdict:
    """Gopher's repetition fractions over a field's non-blank lines: the lines that repeat an earlier
    line, and the characters in them. A line with fewer than `dup_line_min_chars` letters or digits
    (a heading such as "👉🏻做法：", a list marker, an emoji separator) never counts as a repeat."""
    lines = list(filter(None, map(str.strip, value.split("\n"))))
    if len(set(lines)) == len(lines):
        return None                             # no line repeats: the common case
    repeats: Counter[str] = Counter()
    for line, n in Counter(lines).items():
        if n > 1 and len(_NOT_WORD.sub("", line)) >= limits.dup_line_min_chars:
            repeats[line] = n - 1
    if not repeats:
        return None
    dup = sum(repeats.values())
    dup_chars = sum(len(line) * n for line, n in repeats.items())
    chars = sum(map(len, lines))
    most, most_chars = limits.max_dup_line_frac, limits.max_dup_line_char_frac
    if most is not None and dup > most * len(lines):
        measured = f"{dup} of its {len(lines)} lines ({dup / len(lines):.0%}) repeat an earlier line"
        knob = f"max_dup_line_frac is {most}"
    elif most_chars is not None and dup_chars > most_chars * chars:
        measured = f"{dup_chars} of its {chars} characters ({dup_chars / chars:.0%}) are in lines that repeat an earlier line"
        knob = f"max_dup_line_char_frac is {most_chars}"
    else:
        return None
    line, n = repeats.most_common(1)[0]
    shown = line if len(line) <= 20 else line[:20] + "…"
    return "repeated_lines", f"{field}: {measured} ({shown!r} {n + 1} times), {knob}"


def check(rec: dict[str, Any], cfg: dict[str, Any]) -> Verdict:
    """Judge one normalised record against `cfg` (compiles the rules each call; for tests and one-offs)."""
    return RuleSet(cfg).check(rec)
