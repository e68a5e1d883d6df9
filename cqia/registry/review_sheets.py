"""Review sheets: pending records out to a reviewer, their decisions back into data/reviews/.

A **pending** record is one a reviewer should look at and nobody has decided yet:

- a record rejected as `review_pending` (its category has `review: {require_accept: true}`,
  so only accepted records are released), or
- an accepted record that is not `human_verified` (neither upstream nor a reviewer checked it),

whose id has no decision in `data/reviews/<category>.jsonl` (decisions imported since the
last `dvc repro` count). Pending means "would be released but for a review": records that a
rule rejected, and accepted records that dedup drops as (near) duplicates
(`data/dedup/<category>.jsonl`), are not pending, since a decision on them would never be used.

The sheet is written twice, with the same rows: JSON Lines (for tools) and CSV (UTF-8 with a
BOM, so spreadsheet programs show Chinese correctly). A reviewer fills in `decision`
(`accept` or `reject`; empty means "not decided yet") and `note`; every other column is
read-only context: the record's fields as they would be released, where it comes from
(`source`: raw file and line) and which steps changed it (`hints`).

Importing checks the whole sheet before anything is written, then appends one line per
decision to the category's review file (`{"id", "decision", "reviewer", "note", "date"}`,
see cqia/ingest/decisions.py). An accept makes the record `human_verified` at the next `dvc repro`;
a reject drops it as `review_rejected`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any, Container, Iterable, Iterator

import orjson

from cqia.common.errors import CqiaError
from cqia.common.fileio import dumps_canonical, dumps_line, read_jsonl
from cqia.common.layout import ACCEPTED_FILE, ACCEPTED_LINEAGE_FILE, REJECTS_FILE
from cqia.ingest.decisions import DECISIONS, Decision, load_decisions

SHEET_COLUMNS = ("id", "decision", "note", "category", "status", "instruction", "input", "output",
                 "task_type", "domain", "answer_from", "source", "hints")
EDITABLE = ("decision", "note")
PENDING_REASON = "review_pending"
REVIEWED_REASONS = ("review_pending", "review_rejected")
QUIET_STEPS = ("parse", "schema", "gate")

# The category stage's outputs the review tools read (dvc.yaml names them; data/stages/<category>/).
ACCEPTED, ACCEPTED_LINEAGE, REJECTS = ACCEPTED_FILE, ACCEPTED_LINEAGE_FILE, REJECTS_FILE


# --- export --------------------------------------------------------------


def hints(lineage: dict[str, Any]) -> str:
    """What the pipeline did to a record, one short clause per step that changed or judged it."""
    out: list[str] = []
    for step in lineage.get("steps", []):
        name = step.get("step")
        if name in QUIET_STEPS or (name == "rules" and step.get("result") == "pass" and len(step) <= 2):
            continue
        if name == "map":
            if step.get("defaults"):
                out.append(f"defaults: {', '.join(step['defaults'])}")
            if step.get("dropped_keys"):
                out.append(f"dropped keys: {', '.join(step['dropped_keys'])}")
            continue
        if name == "normalize":
            out.append(f"normalize {step.get('field')}: {', '.join(step.get('rules', []))}")
            continue
        if name == "review" and step.get("result") == "reject":
            continue  # review_pending itself: the reason this record is on the sheet
        extra = {k: v for k, v in step.items() if k not in ("step", "before", "after", "edits")}
        out.append(f"{name}: {dumps_canonical(extra).decode()}")
    return "; ".join(out)


def source_of(lineage: dict[str, Any]) -> str:
    src = lineage.get("source") or {}
    text = f"{src.get('file', '?')}:{src.get('line', '?')}"
    if src.get("index") is not None:
        text += f" (item {src['index']})"
    return text


def sheet_row(record: dict[str, Any], lineage: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "id": lineage["id"], "decision": "", "note": "", "category": lineage.get("category", ""),
        "status": status,
        "instruction": record.get("instruction", ""), "input": record.get("input", ""),
        "output": record.get("output", ""), "task_type": record.get("task_type"), "domain": record.get("domain"),
        "answer_from": record.get("answer_from", ""), "source": source_of(lineage), "hints": hints(lineage),
    }


def pending_rows(accepted: Iterable[dict[str, Any]], rejects: Iterable[dict[str, Any]], decided: set[str],
                 dropped: Container[str], rebuild, raw_files: tuple[str, ...]) -> list[dict[str, Any]]:
    """Sheet rows of the pending records, in raw order (raw files as params lists them, then line).

    `accepted` are the stage's accepted entries ({record, lineage}), `rejects` its reject
    lineages, `dropped` the ids dedup drops (`dedup_drops`); `rebuild(lineage)` returns the
    record a `review_pending` reject would be released as.
    """
    order = {name: i for i, name in enumerate(raw_files)}
    keyed: list[tuple[tuple, dict[str, Any]]] = []

    def key(lineage: dict[str, Any]) -> tuple:
        src = lineage.get("source") or {}
        return (order.get(Path(str(src.get("file", ""))).name, len(order)), src.get("line") or 0,
                src.get("index") or 0, lineage["id"])

    for entry in accepted:
        record, lineage = entry["record"], entry["lineage"]
        if record["id"] not in decided and record["id"] not in dropped and not record.get("human_verified"):
            keyed.append((key(lineage), sheet_row(record, lineage, "released")))
    for lineage in rejects:
        if lineage.get("reason") == PENDING_REASON and lineage["id"] not in decided:
            keyed.append((key(lineage), sheet_row(rebuild(lineage), lineage, PENDING_REASON)))
    keyed.sort(key=lambda pair: pair[0])
    return [row for _, row in keyed]


def dedup_drops(decisions: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Id -> what dedup dropped the record as ("a duplicate of <id>", "a near duplicate of <id>"),
    from a category's dedup decisions (schemas/dedup.schema.json; a kept record is not a drop)."""
    drops: dict[str, str] = {}
    for decision in decisions:
        if "duplicate_of" in decision:
            drops[decision["id"]] = f"a duplicate of {decision['duplicate_of']}"
        elif "near_duplicate_of" in decision:
            drops[decision["id"]] = f"a near duplicate of {decision['near_duplicate_of']}"
    return drops


def load_dedup_drops(name: str, dedup_dir: Path) -> dict[str, str]:
    """`dedup_drops` of the category's dedup decisions (the dedup stage's `<dedup_dir>/<name>.jsonl`)."""
    path = dedup_dir / f"{name}.jsonl"
    if not path.is_file():
        raise CqiaError(f"no dedup decisions for category '{name}'", where=str(path),
                        fix="Run `dvc repro dedup` first")
    return dedup_drops(read_jsonl(path))


def sample_rows(rows: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """At most n rows, chosen by a seeded hash of the id (stable across runs, machines and
    Python versions; a record stays in the sample when others are added), kept in sheet order."""
    if n is None or n >= len(rows):
        return rows
    rank = sorted(range(len(rows)), key=lambda i: hashlib.sha256(f"{seed}\x00{rows[i]['id']}".encode()).digest())
    chosen = set(rank[:n])
    return [row for i, row in enumerate(rows) if i in chosen]


def csv_cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return dumps_canonical(value).decode()


def write_sheet(rows: list[dict[str, Any]], jsonl_path: Path, csv_path: Path, staging) -> None:
    with staging.open(jsonl_path) as out:
        for row in rows:
            out.write(dumps_line(row))
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(SHEET_COLUMNS)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in SHEET_COLUMNS])
    with staging.open(csv_path) as out:
        out.write(buffer.getvalue().encode("utf-8-sig"))


class Rebuilder:
    """Rebuilds the record a `review_pending` reject would be released as, with the category core."""

    def __init__(self, category, schema_path: str | Path):
        from cqia.gates.schema import RecordSchema
        from cqia.ingest.judge import Processor

        self.category = dataclasses.replace(category, review={})
        self.processor = Processor(self.category, RecordSchema.from_file(schema_path), {})

    def __call__(self, lineage: dict[str, Any]) -> dict[str, Any]:
        from cqia.ingest.formats import FORMATS, RawItem
        from cqia.ingest.judge import Source

        src = lineage.get("source") or {}
        layout = (lineage.get("steps") or [{}])[0].get("layout", "")
        item = RawItem(line=src.get("line", 0), index=src.get("index"), raw=lineage.get("raw"), text="",
                       layout=layout)
        outcome = self.processor.one(Source(file=src.get("file", ""), md5=src.get("md5", "")), item)
        if outcome.accepted:
            return outcome.record
        # Params changed since the stage ran: show the raw fields as the format maps them.
        try:
            return FORMATS[self.category.format].fields(lineage.get("raw"), layout)
        except Exception:
            return {"output": dumps_canonical(lineage.get("raw")).decode()}


# --- import --------------------------------------------------------------


@dataclass(frozen=True)
class SheetDecision:
    id: str
    decision: str     # "accept", "reject" or "" (not decided yet)
    note: str
    line: int         # where the row starts in the sheet (1-based, header is line 1 in CSV)


def read_sheet(path: Path) -> list[SheetDecision]:
    """The rows of a review sheet (.jsonl or .csv), with their line numbers; checks each row's fields."""
    if not path.is_file():
        raise CqiaError("review sheet not found", where=str(path), fix="Give the .jsonl or .csv file "
                        "`cqia review export` wrote")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _jsonl_rows(path)
    elif suffix == ".csv":
        rows = _csv_rows(path)
    else:
        raise CqiaError(f"unknown sheet type '{path.suffix}'", where=str(path),
                        fix="Import the .jsonl or .csv file `cqia review export` wrote")
    out = []
    for line, row in rows:
        where = f"{path}:{line}"
        rid = row.get("id")
        if not isinstance(rid, str) or not rid.strip():
            raise CqiaError("field 'id' is missing or empty", where=where,
                            fix="Keep the id column as `cqia review export` wrote it")
        decision = row.get("decision")
        decision = "" if decision is None else decision
        if not isinstance(decision, str):
            raise CqiaError(f"field 'decision' is {decision!r}", where=where,
                            fix="Use accept or reject, or leave it empty to decide later")
        decision = decision.strip().lower()
        if decision and decision not in DECISIONS:
            raise CqiaError(f"field 'decision' is {row.get('decision')!r}", where=where,
                            fix="Use accept or reject, or leave it empty to decide later")
        note = row.get("note")
        note = "" if note is None else note
        if not isinstance(note, str):
            raise CqiaError("field 'note' must be text", where=where)
        out.append(SheetDecision(rid.strip(), decision, note.strip(), line))
    return out


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CqiaError(f"not valid JSON ({exc})", where=f"{path}:{number}",
                                fix="Fix the line, or edit the CSV sheet instead") from None
            if not isinstance(row, dict):
                raise CqiaError("a sheet row must be a JSON object", where=f"{path}:{number}")
            yield number, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CqiaError(f"not UTF-8 (byte {exc.start + 1})", where=str(path),
                        fix="Save the sheet as 'CSV UTF-8' in your spreadsheet program") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise CqiaError("the sheet is empty", where=str(path), fix="Export a sheet with `cqia review export`")
    header = [h.strip() for h in header]
    missing = [c for c in ("id", "decision") if c not in header]
    if missing:
        raise CqiaError(f"column(s) {missing} missing from the header", where=f"{path}:1",
                        fix="Keep the header row as `cqia review export` wrote it")
    start = reader.line_num + 1
    for cells in reader:
        if any(c.strip() for c in cells):
            if len(cells) > len(header):
                raise CqiaError(f"{len(cells)} cells but the header has {len(header)}", where=f"{path}:{start}",
                                fix="Check for a stray comma or quote in this row")
            yield start, dict(zip(header, cells))
        start = reader.line_num + 1


@dataclass
class CategoryState:
    """What import needs to know about one category: its stage outputs and its review file."""

    name: str
    reviews: Path
    decisions: dict[str, Decision]
    reviewable: set[str]
    rejected_by_rule: dict[str, str]       # id -> reason, for records a decision could not apply to
    dropped_by_dedup: dict[str, str]       # id -> "a (near) duplicate of <id>", likewise


def load_reviews(name: str, reviews_dir: Path) -> tuple[Path, dict[str, Decision]]:
    """The category's review file and its decisions (last line wins); no file means none yet."""
    reviews = reviews_dir / f"{name}.jsonl"
    if not reviews.is_file():
        return reviews, {}
    with open(reviews, "rb") as handle:
        return reviews, load_decisions(handle, str(reviews))


def accepted_entries(stage_dir: Path) -> Iterator[dict[str, Any]]:
    """The category stage's accepted records with their lineage ({record, lineage}), from its
    `accepted.jsonl.zst` and `lineage.jsonl.zst` (line for line)."""
    pairs = zip_longest(read_jsonl(stage_dir / ACCEPTED), read_jsonl(stage_dir / ACCEPTED_LINEAGE))
    for n, (record, lineage) in enumerate(pairs, 1):
        if record is None or lineage is None or record["id"] != lineage["id"]:
            raise CqiaError(f"line {n} of {ACCEPTED} and of {ACCEPTED_LINEAGE} are not the same record",
                            where=str(stage_dir), fix=f"Run `dvc repro -f category@{stage_dir.name}`")
        yield {"record": record, "lineage": lineage}


def category_state(name: str, stages_dir: Path, reviews_dir: Path, dedup_dir: Path) -> CategoryState:
    cdir = stages_dir / name
    accepted, rejects = cdir / ACCEPTED, cdir / REJECTS
    for path in (accepted, rejects):
        if not path.is_file():
            raise CqiaError(f"no stage output for category '{name}'", where=str(path),
                            fix=f"Run `dvc repro category@{name}` first")
    reviewable: set[str] = set()
    by_rule: dict[str, str] = {}
    for record in read_jsonl(accepted):
        reviewable.add(record["id"])
    for lineage in read_jsonl(rejects):
        if lineage.get("reason") in REVIEWED_REASONS or any(
                s.get("step") == "review" for s in lineage.get("steps", [])):
            reviewable.add(lineage["id"])
        else:
            by_rule[lineage["id"]] = str(lineage.get("reason"))
    reviews, decisions = load_reviews(name, reviews_dir)
    return CategoryState(name, reviews, decisions, reviewable, by_rule, load_dedup_drops(name, dedup_dir))


def plan_import(rows: list[SheetDecision], sheet: Path, categories: list[str], state_of) -> dict[str, Any]:
    """Check every row; return what to append. Raises on the first problem, so nothing is written.

    `state_of(category)` gives the CategoryState of a category (loaded once per category).
    """
    first_line: dict[str, int] = {}
    to_append: dict[str, list[SheetDecision]] = {}
    already = undecided = 0
    for row in rows:
        where = f"{sheet}:{row.line}"
        if row.id in first_line:
            raise CqiaError(f"id '{row.id}' is on the sheet twice (first on line {first_line[row.id]})",
                            where=where, fix="Keep one row per id")
        first_line[row.id] = row.line
        category = row.id.rpartition("-")[0]
        if category not in categories:
            raise CqiaError(f"unknown id '{row.id}': it names no source category", where=where,
                            fix=f"Ids look like <category>-<16 hex digits>; categories: {categories}")
        state = state_of(category)
        if row.id not in state.reviewable:
            if row.id in state.rejected_by_rule:
                raise CqiaError(f"id '{row.id}' was rejected as {state.rejected_by_rule[row.id]} before review, "
                                "so a decision on it would not be used", where=where, fix="Remove the row")
            raise CqiaError(f"unknown id '{row.id}': not a record of category '{category}'", where=where,
                            fix=f"Check the id, or export a fresh sheet with `cqia review export {category}`")
        if row.id in state.dropped_by_dedup:
            raise CqiaError(f"id '{row.id}' was dropped by dedup as {state.dropped_by_dedup[row.id]}, "
                            "so a decision on it would not be used", where=where, fix="Remove the row")
        if not row.decision:
            undecided += 1
            continue
        earlier = state.decisions.get(row.id)
        if earlier is not None:
            if earlier.decision != row.decision:
                raise CqiaError(f"conflicting decision for '{row.id}': the sheet says {row.decision}, "
                                f"but {state.reviews}:{earlier.line} says {earlier.decision} "
                                f"({earlier.reviewer}, {earlier.date})", where=where,
                                fix=f"Agree on one decision; to change it, edit {state.reviews} by hand "
                                    "(it is versioned with git)")
            already += 1
            continue
        to_append.setdefault(category, []).append(row)
    return {"append": to_append, "already_recorded": already, "undecided": undecided}


def check_reviewer(name: str) -> str:
    name = (name or "").strip()
    if not name or any(c in name for c in "\r\n\t"):
        raise CqiaError(f"reviewer {name!r} is not a usable name", where="--reviewer",
                        fix="Give a non-empty name on one line, e.g. --reviewer wang.li")
    return name


def check_date(value: str | None) -> str:
    if value is None:
        return dt.date.today().isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise CqiaError(f"date {value!r} is not a date", where="--date", fix="Use YYYY-MM-DD") from None


def decision_lines(rows: list[SheetDecision], reviewer: str, date: str) -> bytes:
    return b"".join(dumps_line({"id": r.id, "decision": r.decision, "reviewer": reviewer, "note": r.note,
                                "date": date}) for r in rows)
