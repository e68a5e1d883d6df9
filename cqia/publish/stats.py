"""Reports: per-category statistics of a release, as DVC metrics and plots.

Pure: records and reason counts in, dicts and CSV rows out. The `publish@<category>` stage
accumulates its released records' statistics while it writes them and stores them in its
summary (`as_dict`); stages/report.py merges the summaries (`from_dict`) and never reads a record.
Everything is deterministic (sorted keys, ties broken by label, no timestamps), so `dvc repro`
reproduces the report byte for byte.

Statistics per category, over the released records: counts by reason (from the release
metrics, so `duplicate_of` and `near_duplicate_of` are included), character lengths of
`instruction` and `output` (min, percentiles, max, mean), `task_type.major` and `domain`
breakdowns, and how many records are `human_verified`.

The same plot rows also become static SVG charts: cqia/report/charts.py. The report's other
part, Data Docs of the gate runs, is cqia/report/datadocs.py.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, NamedTuple

LENGTH_FIELDS = ("instruction", "output")
SUMMARY_PERCENTILES = (50, 90, 99)
PLOT_PERCENTILES = tuple(range(0, 101, 5))
TOP_LABELS = 10           # domains / task types listed by name in the metrics; the rest are summed as "other"
CHART_LABELS = 20         # bars in a static chart; the rest are summed as "other"
OTHER = "(other)"
ALL = "all"               # the pseudo-category of every record


def histogram_percentile(histogram: list[tuple[int, int]], p: float) -> int:
    """Nearest-rank percentile of the values a histogram ([(value, count)], sorted by value)
    counts: the smallest value with at least ceil(p% of all) values at or below it (0 if empty)."""
    total = sum(n for _, n in histogram)
    if not total:
        return 0
    rank = min(max(1, math.ceil(p / 100 * total)), total)
    seen = 0
    for value, n in histogram:
        seen += n
        if seen >= rank:
            return value
    raise AssertionError("unreachable: rank <= total")


class CategoryStats:
    """Accumulates the statistics of one category's released records."""

    def __init__(self, name: str):
        self.name = name
        self.lengths: dict[str, Counter[int]] = {f: Counter() for f in LENGTH_FIELDS}  # length -> records
        self.task_types: Counter[str] = Counter()
        self.domains: Counter[str] = Counter()
        self.answer_from: Counter[str] = Counter()
        self.human_verified = 0
        self.released = 0

    def add(self, record: dict[str, Any]) -> None:
        self.released += 1
        for field in LENGTH_FIELDS:
            self.lengths[field][len(record.get(field) or "")] += 1
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
                total.lengths[field].update(stats.lengths[field])
            total.task_types.update(stats.task_types)
            total.domains.update(stats.domains)
            total.answer_from.update(stats.answer_from)
            total.human_verified += stats.human_verified
            total.released += stats.released
        return total

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON (what a publish summary stores): lengths as [length, records] pairs."""
        return {"released": self.released, "human_verified": self.human_verified,
                "lengths": {f: [list(pair) for pair in sorted(c.items())] for f, c in self.lengths.items()},
                "task_types": dict(sorted(self.task_types.items())), "domains": dict(sorted(self.domains.items())),
                "answer_from": dict(sorted(self.answer_from.items()))}

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> "CategoryStats":
        stats = cls(name)
        stats.released, stats.human_verified = data["released"], data["human_verified"]
        for field in LENGTH_FIELDS:
            stats.lengths[field] = Counter({length: n for length, n in data["lengths"][field]})
        stats.task_types, stats.domains = Counter(data["task_types"]), Counter(data["domains"])
        stats.answer_from = Counter(data["answer_from"])
        return stats

    def histograms(self) -> dict[str, list[tuple[int, int]]]:
        return {f: sorted(c.items()) for f, c in self.lengths.items()}

    def metrics(self, rejected_by_reason: dict[str, int]) -> dict[str, Any]:
        lengths = self.histograms()
        out: dict[str, Any] = {
            "released": self.released,
            "rejected": sum(rejected_by_reason.values()),
            "rejected_by_reason": dict(sorted(rejected_by_reason.items())),
            "human_verified": self.human_verified,
        }
        for field, hist in lengths.items():
            total = sum(n for _, n in hist)
            summary = {"min": hist[0][0] if hist else 0}
            summary.update({f"p{p}": histogram_percentile(hist, p) for p in SUMMARY_PERCENTILES})
            summary["max"] = hist[-1][0] if hist else 0
            summary["mean"] = round(sum(v * n for v, n in hist) / total, 1) if total else 0
            out[f"{field}_chars"] = summary
        out["task_type"] = top(self.task_types)
        out["domain"] = top(self.domains)
        out["answer_from"] = dict(sorted(self.answer_from.items()))
        return out

    def plot_rows(self, rejected_by_reason: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
        """Rows of each plot file, by plot name (see PLOTS)."""
        lengths = self.histograms()
        rows: dict[str, list[dict[str, Any]]] = {
            "rejected_by_reason": [{"reason": r, "records": n} for r, n in sorted(rejected_by_reason.items())],
            "task_type": [{"task_type": k, "records": n} for k, n in ranked(self.task_types)],
            "domain": [{"domain": k, "records": n} for k, n in ranked(self.domains)],
        }
        for field, hist in lengths.items():
            rows[f"{field}_length"] = [{"percentile": p, "chars": histogram_percentile(hist, p)} for p in PLOT_PERCENTILES]
        return rows


class Plot(NamedTuple):
    columns: tuple[str, ...]  # of its CSV files, data/reports/plots/<name>/<category>.csv
    x: str
    y: str
    template: str             # DVC's template, as dvc.yaml declares it
    title: str                # of its static chart, data/reports/plots/<name>.svg


# Plot name -> what dvc.yaml declares for data/reports/plots/<name>/ (and <name>.svg).
PLOTS = {
    "rejected_by_reason": Plot(("reason", "records"), "records", "reason", "bar_horizontal_sorted",
                               "Rejected records by reason code"),
    "task_type": Plot(("task_type", "records"), "records", "task_type", "bar_horizontal_sorted",
                      "Released records by task type (task_type.major)"),
    "domain": Plot(("domain", "records"), "records", "domain", "bar_horizontal_sorted",
                   "Released records by domain"),
    "instruction_length": Plot(("percentile", "chars"), "percentile", "chars", "linear",
                               "Instruction length in characters, by percentile"),
    "output_length": Plot(("percentile", "chars"), "percentile", "chars", "linear",
                          "Output length in characters, by percentile"),
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

