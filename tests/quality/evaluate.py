"""Judge the evaluation set (records.yaml) as the category stage would, and score each rule.

Each record becomes a raw `cqia-jsonl` record of a source category of params.yaml
(zhihu by default) and goes through that category's core (`Processor`: map,
normalise, PII, rules, schema), so the verdict is the release's. Pure: a list
of records in, a list of verdicts out; `load` is the only function that reads
a file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import orjson

HERE = Path(__file__).resolve().parent
RECORDS = HERE / "records.yaml"
TASK_TYPE = {"major": ["问答"], "minor": ["知乎问答"]}
KEEP = "keep"


@dataclass(frozen=True)
class Verdict:
    id: str
    label: str              # what the record must get: keep, or a reason code
    got: str                # what it got
    detail: str             # the reject's detail ("" if kept)
    record: dict[str, Any] | None   # the released record, if kept


def load(path: Path = RECORDS) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML

    with open(path, encoding="utf-8") as handle:
        return YAML(typ="safe", pure=True).load(handle)


def raw_record(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as upstream would write it in the cqia-jsonl format."""
    return {"instruction": entry["instruction"], "input": entry.get("input", ""), "output": entry["output"],
            "task_type": entry.get("task_type", TASK_TYPE), "domain": ["通用"], "metadata": "",
            "answer_from": "human", "human_verified": False}


def judge(entries: Iterable[dict[str, Any]], params: dict[str, Any], category: str = "zhihu") -> list[Verdict]:
    from cqia.gates.schema import RecordSchema
    from cqia.ingest.config import load_checked_category
    from cqia.ingest.formats import RawItem
    from cqia.ingest.judge import Processor, Source

    schema = RecordSchema.from_file(HERE.parent.parent / "schemas" / "record.schema.json")
    processor = Processor(load_checked_category(params, category), schema, {})
    source = Source(RECORDS.name, "-")
    out = []
    for line, entry in enumerate(entries, 1):
        raw = raw_record(entry)
        item = RawItem(line=line, index=None, raw=raw, text=orjson.dumps(raw).decode(), layout="jsonl")
        outcome = processor.one(source, item)
        got = KEEP if outcome.accepted else outcome.reason or "unknown"
        out.append(Verdict(entry["id"], entry["label"], got, outcome.lineage.get("detail", ""), outcome.record))
    return out


@dataclass(frozen=True)
class Score:
    label: str
    support: int        # records labelled so
    predicted: int      # records that got it
    correct: int        # both

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.correct / self.support if self.support else None


def scores(verdicts: list[Verdict]) -> list[Score]:
    """Per reason code (and keep): precision (of the records it got, how many it should have) and recall."""
    support = Counter(v.label for v in verdicts)
    predicted = Counter(v.got for v in verdicts)
    correct = Counter(v.label for v in verdicts if v.label == v.got)
    labels = sorted(set(support) | set(predicted), key=lambda label: (label != KEEP, label))
    return [Score(label, support[label], predicted[label], correct[label]) for label in labels]
