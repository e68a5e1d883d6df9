"""Reports: per-category statistics of a release, as DVC metrics and plots.

Pure: records and reason counts in, dicts and CSV rows out; stages/report.py does the I/O.
Everything is deterministic (sorted keys, ties broken by label, no timestamps), so `dvc repro`
reproduces the report byte for byte.

Statistics per category, over the released records: counts by reason (from the release
metrics, so `duplicate_of` and `near_duplicate_of` are included), character lengths of
`instruction` and `output` (min, percentiles, max, mean), `task_type.major` and `domain`
breakdowns, and how many records are `human_verified`.

The report's other part, Data Docs of the gate runs, is cqia/datadocs.py.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable

LENGTH_FIELDS = ("instruction", "output")
SUMMARY_PERCENTILES = (50, 90, 99)
PLOT_PERCENTILES = tuple(range(0, 101, 5))
TOP_LABELS = 10           # domains / task types listed by name in the metrics; the rest are summed as "other"
OTHER = "(other)"


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of a sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class CategoryStats:
    """Accumulates the statistics of one category's released records."""

    def __init__(self, name: str):
        self.name = name
        self.lengths: dict[str, list[int]] = {f: [] for f in LENGTH_FIELDS}
        self.task_types: Counter[str] = Counter()
        self.domains: Counter[str] = Counter()
        self.answer_from: Counter[str] = Counter()
        self.human_verified = 0
        self.released = 0

    def add(self, record: dict[str, Any]) -> None:
        self.released += 1
        for field in LENGTH_FIELDS:
            self.lengths[field].append(len(record.get(field) or ""))
        self.task_types.update((record.get("task_type") or {}).get("major") or ["(none)"])
        self.domains.update(record.get("domain") or ["(none)"])
        self.answer_from[record.get("answer_from") or "(none)"] += 1
        self.human_verified += bool(record.get("human_verified"))

    def add_all(self, records: Iterable[dict[str, Any]]) -> "CategoryStats":
        for record in records:
            self.add(record)
        return self

    def merged(self, others: list["CategoryStats"], name: str) -> "CategoryStats":
        total = CategoryStats(name)
        for stats in [self, *others]:
            for field in LENGTH_FIELDS:
                total.lengths[field].extend(stats.lengths[field])
            total.task_types.update(stats.task_types)
            total.domains.update(stats.domains)
            total.answer_from.update(stats.answer_from)
            total.human_verified += stats.human_verified
            total.released += stats.released
        return total

    def sorted_lengths(self) -> dict[str, list[int]]:
        return {f: sorted(v) for f, v in self.lengths.items()}

    def metrics(self, rejected_by_reason: dict[str, int]) -> dict[str, Any]:
        lengths = self.sorted_lengths()
        out: dict[str, Any] = {
            "released": self.released,
            "rejected": sum(rejected_by_reason.values()),
            "rejected_by_reason": dict(sorted(rejected_by_reason.items())),
            "human_verified": self.human_verified,
        }
        for field, values in lengths.items():
            summary = {"min": values[0] if values else 0}
            summary.update({f"p{p}": percentile(values, p) for p in SUMMARY_PERCENTILES})
            summary["max"] = values[-1] if values else 0
            summary["mean"] = round(sum(values) / len(values), 1) if values else 0
            out[f"{field}_chars"] = summary
        out["task_type"] = top(self.task_types)
        out["domain"] = top(self.domains)
        out["answer_from"] = dict(sorted(self.answer_from.items()))
        return out

    def plot_rows(self, rejected_by_reason: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
        """Rows of each plot file, by plot name (see PLOTS)."""
        lengths = self.sorted_lengths()
        rows: dict[str, list[dict[str, Any]]] = {
            "rejected_by_reason": [{"reason": r, "records": n} for r, n in sorted(rejected_by_reason.items())],
            "task_type": [{"task_type": k, "records": n} for k, n in ranked(self.task_types)],
            "domain": [{"domain": k, "records": n} for k, n in ranked(self.domains)],
        }
        for field, values in lengths.items():
            rows[f"{field}_length"] = [{"percentile": p, "chars": percentile(values, p)} for p in PLOT_PERCENTILES]
        return rows


# Plot name -> (columns, x, y, template): what dvc.yaml declares for data/reports/plots/<name>/.
PLOTS = {
    "rejected_by_reason": (("reason", "records"), "records", "reason", "bar_horizontal_sorted"),
    "task_type": (("task_type", "records"), "records", "task_type", "bar_horizontal_sorted"),
    "domain": (("domain", "records"), "records", "domain", "bar_horizontal_sorted"),
    "instruction_length": (("percentile", "chars"), "percentile", "chars", "linear"),
    "output_length": (("percentile", "chars"), "percentile", "chars", "linear"),
}


def ranked(counter: Counter[str]) -> list[tuple[str, int]]:
    """Most common first; ties by label, so the order never depends on insertion."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def top(counter: Counter[str], n: int = TOP_LABELS) -> dict[str, int]:
    items = ranked(counter)
    out = dict(items[:n])
    rest = sum(v for _, v in items[n:])
    if rest:
        out[OTHER] = rest
    return out

