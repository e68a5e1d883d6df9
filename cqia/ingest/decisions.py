"""Review decisions: versioned data in data/reviews/<category>.jsonl.

One JSON object per line: {"id", "decision": "accept"|"reject", "reviewer",
"note", "date": "YYYY-MM-DD"}. The file is an append-only log: when an id has
several decisions, the last line wins. An accept sets `human_verified`; a
reject drops the record with reason `review_rejected`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import orjson

from cqia.common.errors import CqiaError
from cqia.common.lineage import review_step

DECISIONS = ("accept", "reject")
REQUIRED = ("id", "decision", "reviewer", "date")


@dataclass(frozen=True)
class Decision:
    id: str
    decision: str
    reviewer: str
    note: str
    date: str
    line: int

    def as_step(self) -> dict:
        return review_step(self.decision, self.reviewer, self.note, self.date, self.line)


def parse_decision(line: bytes, number: int, where: str) -> Decision:
    loc = f"{where}:{number}"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CqiaError(f"not valid JSON ({exc})", where=loc, fix="Fix or remove the line") from None
    if not isinstance(obj, dict):
        raise CqiaError("a review decision must be a JSON object", where=loc)
    for key in REQUIRED:
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise CqiaError(f"field '{key}' is missing or not a non-empty string", where=loc,
                            fix=f"Each decision needs {list(REQUIRED)}")
    if obj["decision"] not in DECISIONS:
        raise CqiaError(f"field 'decision' is {obj['decision']!r}", where=loc, fix=f"Use one of {list(DECISIONS)}")
    try:
        dt.date.fromisoformat(obj["date"])
    except ValueError:
        raise CqiaError(f"field 'date' is {obj['date']!r}", where=loc, fix="Use YYYY-MM-DD") from None
    note = obj.get("note", "")
    if not isinstance(note, str):
        raise CqiaError("field 'note' must be a string", where=loc)
    return Decision(obj["id"], obj["decision"], obj["reviewer"], note, obj["date"], number)


def load_decisions(lines: Iterable[bytes], where: str) -> dict[str, Decision]:
    decisions: dict[str, Decision] = {}
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]                     # a BOM, as editors on Windows save one
        if line.strip():
            decision = parse_decision(line, number, where)
            decisions[decision.id] = decision
    return decisions


def read_decisions(path: Path) -> dict[str, Decision]:
    """A category's review file; it must exist (empty: no decisions yet)."""
    if not path.is_file():
        raise CqiaError("review file not found", where=str(path),
                        fix="Create it (an empty file means no decisions yet)")
    with open(path, "rb") as handle:
        return load_decisions(handle, str(path))
