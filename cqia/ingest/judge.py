"""The category stage's core: raw items in, accepted records and rejects out.

    parse -> map to the record -> normalise -> mask PII -> rules -> review -> schema

`process()` is a pure generator: it never sees a path or params.yaml. Each
outcome carries its lineage (source location, the raw record verbatim and
every step that touched it), so lineage is a lookup, never a reconstruction.

Lineage is published (in the release and in the stage's rejects), so it must
not carry the PII its category's `rules.pii` masks or rejects: in a category
with such kinds, every text the lineage holds (the raw record, the steps'
`before` and `after`, details and notes) has those spans replaced by the
record's mask tokens, and `redacted` lists the kinds replaced. Then the
normalize and mask steps are stored as edits (what changed, not the field
before and after; cqia/common/lineage.py). What an auditor
checks against the immutable raw file stays exact: `source` has the raw
file, its md5, the line, and `raw_sha256`, the sha256 of the raw record's
verbatim text (the line without its newline, BOM and surrounding white space,
or the JSON array element).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import orjson

from cqia.common.fileio import dumps_canonical
from cqia.common.lineage import edit_step, is_edit, map_step, parse_step, pass_step, reject_step, store_edits
from cqia.common.params import Category
from cqia.common.record import RECORD_KEYS, TEXT_FIELDS
from cqia.gates.schema import RecordSchema
from cqia.ingest import pii
from cqia.ingest.decisions import Decision
from cqia.ingest.formats import FORMATS, MissingField, RawItem, edit_base
from cqia.ingest.normalize import normalize_text, rule_chain
from cqia.ingest.rules import RuleSet

# The keys of lineage and of its steps that quote record text (the rest are codes, names and numbers).
QUOTING_KEYS = ("before", "after", "detail", "note")


def make_id(category: str, raw: Any, raw_text: str, occurrence: int) -> str:
    """A stable id: sha256 over the category, the canonical raw record and its occurrence.

    The raw record is serialised canonically (sorted keys, no whitespace), so
    the id does not depend on the line it sits on, on key order or
    indentation upstream, or on any cleaning rule. `occurrence` (0 for the
    first copy) tells byte-identical raw records apart. A raw line that did
    not parse is hashed as its text.
    """
    body = dumps_canonical(raw) if raw is not None else raw_text.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(category.encode() + b"\x00" + body + b"\x00" + str(occurrence).encode()).hexdigest()
    return f"{category}-{digest[:16]}"


def duplicate_key(raw: Any, text: str) -> bytes:
    """What tells byte-identical raw records apart: a hash of the canonical raw record (of the text if it
    did not parse). Records with the same key are numbered by their occurrence (see make_id)."""
    return hashlib.blake2b(dumps_canonical(raw) if raw is not None else text.encode("utf-8", "surrogatepass"),
                           digest_size=12).digest()


@dataclass
class Outcome:
    accepted: bool
    id: str
    record: dict[str, Any] | None      # the released record (accepted only)
    lineage: dict[str, Any]
    reason: str | None = None


@dataclass(frozen=True)
class Source:
    """Where a raw file's items come from, as lineage shows it."""

    file: str
    md5: str


class Processor:
    """Turns the raw items of one category into outcomes. Holds only per-category state."""

    def __init__(self, category: Category, schema: RecordSchema, decisions: dict[str, Decision]):
        self.category = category
        self.schema = schema
        self.decisions = decisions
        self.unused_decisions = set(decisions)
        self.fmt = FORMATS[category.format]
        self.chain = rule_chain(category.normalize)
        self.rules = RuleSet(category.rules, f"categories.{category.name}.rules")
        self.require_accept = bool(category.review.get("require_accept"))
        self._seen: dict[bytes, int] = {}
        self._defaults = {key: orjson.dumps(value) for key, value in category.defaults.items()}

    def next_occurrence(self, key: bytes) -> int:
        """The occurrence of the next raw record with this `duplicate_key` in the category (0 for the first)."""
        count = self._seen.get(key, 0)
        self._seen[key] = count + 1
        return count

    def process(self, source: Source, items: Iterable[RawItem]) -> Iterator[Outcome]:
        for item in items:
            yield self.one(source, item)

    def one(self, source: Source, item: RawItem, occurrence: int | None = None) -> Outcome:
        """The outcome of the next raw item; `occurrence` given (cqia/ingest/parallel.py) is not counted here."""
        if occurrence is None:
            occurrence = self.next_occurrence(duplicate_key(item.raw, item.text))
        outcome = self._judge(source, item, occurrence)
        if self.rules.pii_kinds:
            redact_lineage(outcome.lineage, self.rules.pii_kinds)
        steps = outcome.lineage["steps"]
        if any(is_edit(step) for step in steps):       # stored as edits, over the raw record as redacted
            store_edits(steps, edit_base(self.category.format, item.layout, outcome.lineage["raw"]))
        return outcome

    def _judge(self, source: Source, item: RawItem, occurrence: int) -> Outcome:
        cat = self.category
        rid = make_id(cat.name, item.raw, item.text, occurrence)
        loc: dict[str, Any] = {"file": source.file, "md5": source.md5, "line": item.line}
        if item.index is not None:
            loc["index"] = item.index
        if item.reason != "invalid_utf8":       # its text shows the bad bytes as \xNN: not verbatim
            loc["raw_sha256"] = hashlib.sha256(item.text.encode("utf-8", "surrogatepass")).hexdigest()
        lineage: dict[str, Any] = {
            "id": rid, "status": "rejected", "category": cat.name, "source": loc,
            "raw": item.raw if item.raw is not None else item.text,
            "steps": [parse_step(cat.format, item.layout, item.reason, item.detail)],
        }

        def reject(reason: str, detail: str, step: str) -> Outcome:
            lineage["reason"] = reason
            lineage["detail"] = detail
            if step != "parse":
                lineage["steps"].append(reject_step(step, reason, detail))
            return Outcome(False, rid, None, lineage, reason)

        if item.reason:
            return reject(item.reason, item.detail or "", "parse")
        try:
            fields = self.fmt.fields(item.raw, item.layout)
        except MissingField as exc:
            return reject("missing_field", f"field '{exc.field}' is missing", "map")

        record, map_step = self._assemble(rid, fields, item.raw)
        lineage["steps"].append(map_step)
        missing = [key for key in RECORD_KEYS[1:] if key not in record]
        if missing:
            return reject("missing_field", f"field '{missing[0]}' is missing and categories.{cat.name}.defaults "
                          "has no value for it", "map")
        verdict = self.rules.before_normalise(record)
        if verdict:
            return reject(verdict[0], verdict[1], "rules")
        for name in TEXT_FIELDS:
            value = record[name]
            if isinstance(value, str):
                new, changed = normalize_text(value, self.chain)
                if changed:
                    lineage["steps"].append(edit_step("normalize", name, changed, value, new))
                    record[name] = new
        masks, verdict = self.rules.mask_pii(record)
        lineage["steps"].extend(masks)
        if verdict:
            return reject(verdict[0], verdict[1], "rules")

        verdict = self.rules.check(record)
        if verdict:
            return reject(verdict[0], verdict[1], "rules")
        lineage["steps"].append(pass_step("rules"))

        decision = self.decisions.get(rid)
        if decision:
            self.unused_decisions.discard(rid)
            lineage["steps"].append(decision.as_step())
            if decision.decision == "reject":
                lineage["reason"] = "review_rejected"
                lineage["detail"] = decision.note
                return Outcome(False, rid, None, lineage, "review_rejected")
            record["human_verified"] = True
        elif self.require_accept:
            return reject("review_pending", "this category releases only records a reviewer accepted", "review")

        if not self.schema.is_valid(record):
            return reject("schema_invalid", self.schema.explain(record), "schema")
        lineage["steps"].append(pass_step("schema"))
        lineage["status"] = "accepted"
        return Outcome(True, rid, record, lineage)

    def _assemble(self, rid: str, fields: dict[str, Any], raw: dict) -> tuple[dict[str, Any], dict[str, Any]]:
        defaults = self.category.defaults
        record: dict[str, Any] = {"id": rid}
        from_defaults = []
        for key in RECORD_KEYS[1:]:
            if key in fields:
                record[key] = fields[key]
            elif key in defaults:
                record[key] = orjson.loads(self._defaults[key])  # a fresh copy, 10x cheaper than deepcopy
                from_defaults.append(key)
            elif key == "metadata":
                record[key] = ""
                from_defaults.append(key)
        extra = fields.get("domain_extra")
        if extra and isinstance(record.get("domain"), list):
            record["domain"] = record["domain"] + [d for d in extra if d not in record["domain"]]
        dropped = sorted(k for k in raw if k not in fields) if self.category.format == "cqia-jsonl" else []
        return record, map_step(from_defaults, dropped)


def redact_lineage(lineage: dict[str, Any], kinds: tuple[str, ...]) -> None:
    """Replace the PII of `kinds` in every text `lineage` carries by its mask token, in place.

    The raw record is replaced by a redacted copy (its objects may be shared
    with the record), the steps' quoting keys are redacted, and `redacted`
    (after `raw`) lists the kinds replaced; it is absent if none were. Most
    lineages hold nothing to redact: one search over all their texts says so.
    """
    quoting = [(holder, key) for holder in (lineage, *lineage["steps"]) for key in QUOTING_KEYS
               if isinstance(holder.get(key), str)]
    texts = [holder[key] for holder, key in quoting]
    _strings(lineage["raw"], texts)
    if not pii.may_hold("\n".join(texts)):
        return
    found: set[str] = set()
    seen: dict[str, str] = {}           # a text often recurs: raw field, normalize before, mask before

    def text(value: str) -> str:
        if value not in seen:
            new, kinds_found = pii.redact(value, kinds)
            found.update(kinds_found)
            seen[value] = new
        return seen[value]

    def copy(value: Any) -> Any:
        if isinstance(value, str):
            return text(value)
        if isinstance(value, dict):
            return {key: copy(item) for key, item in value.items()}
        if isinstance(value, list):
            return [copy(item) for item in value]
        if _number_text(value):
            new = text(str(value))
            return value if new == str(value) else new
        return value

    lineage["raw"] = copy(lineage["raw"])
    for holder, key in quoting:
        holder[key] = text(holder[key])
    if found:
        items = list(lineage.items())
        lineage.clear()
        for key, value in items:
            lineage[key] = value
            if key == "raw":
                lineage["redacted"] = [kind for kind in kinds if kind in found]


def _number_text(value: Any) -> bool:
    """A JSON number long enough to be a phone number or a 身份证号 (13812345678 with no quotes)."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**10


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)
    elif _number_text(value):
        out.append(str(value))
