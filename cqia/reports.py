"""Reports: per-category statistics (DVC metrics and plots) and offline Data Docs of the gates.

Pure: records and gate results in, dicts, CSV rows and HTML text out; stages/report.py does
the I/O. Everything is deterministic (sorted keys, no timestamps), so `dvc repro` reproduces
the report byte for byte.

Statistics per category, over the released records: counts by reason (from the release
metrics, so `duplicate_of` and `near_duplicate_of` are included), character lengths of
`instruction` and `output` (min, percentiles, max, mean), `task_type.major` and `domain`
breakdowns, and how many records are `human_verified`.

Data Docs: one static HTML page per gate run (each category stage's Great Expectations
suite with its schema and accounting gates, and the release gate) plus an index. GX's own
Data Docs pull Bootstrap, jQuery and fonts from CDNs and stamp the run time; these pages
are rendered here from the validation results the stages already wrote, with the CSS
inline and no scripts, so they read offline, in any browser, and never change unless a
result does. Rendering them needs no GX import.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from typing import Any, Iterable

from cqia.fileio import dumps_canonical

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


# --- Data Docs -----------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;margin:2rem;color:#1a1a1a;max-width:75rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;word-break:break-all}
.pass{color:#116329;font-weight:600}.fail{color:#a40e26;font-weight:600}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.75rem;color:#fff}
.badge.pass{background:#1f883d}.badge.fail{background:#cf222e}
p.note{color:#57606a}
""".strip()


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(value: Any) -> str:
    return dumps_canonical(value).decode()


def _status(success: bool, badge: bool = False) -> str:
    word = "passed" if success else "FAILED"
    cls = ("badge " if badge else "") + ("pass" if success else "fail")
    return f'<span class="{cls}">{word}</span>'


def _page(title: str, body: list[str]) -> str:
    return "\n".join(['<!DOCTYPE html>', '<html lang="zh">', '<head>', '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f'<title>{_e(title)}</title>', f'<style>\n{CSS}\n</style>', '</head>', '<body>',
                      *body, '</body>', '</html>', ''])


def gate_page(title: str, gx: dict[str, Any], notes: str = "", other_gates: list[tuple[str, bool, str]] = (),
              context: list[tuple[str, str]] = ()) -> str:
    """One gate run: the Great Expectations suite's results, plus the other gates of the same run.

    `gx` is the result `cqia.gx_gate.run_suite` returned (as the stage wrote it to its metrics);
    `other_gates` are (name, success, detail); `context` are (label, value) rows.
    """
    expectations = gx.get("expectations", [])
    passed = sum(1 for e in expectations if e.get("success"))
    body = [f'<h1>{_e(title)} {_status(bool(gx.get("success")), badge=True)}</h1>']
    if notes:
        body.append(f'<p class="note">{_e(notes)}</p>')
    rows = [("suite", gx.get("suite", "")), ("rows validated", gx.get("rows", 0)),
            ("expectations passed", f"{passed} of {len(expectations)}"), *context]
    body += ['<table>'] + [f'<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in rows] + ['</table>']
    body += ['<h2>Expectations</h2>', '<table>',
             '<tr><th>expectation</th><th>column</th><th>arguments</th><th>status</th>'
             '<th>unexpected</th><th>sample ids</th><th>observed</th></tr>']
    for exp in expectations:
        observed = exp.get("observed")
        body.append(
            f'<tr><td><code>{_e(exp.get("expectation"))}</code></td><td>{_e(exp.get("column") or "")}</td>'
            f'<td><code>{_e(_json(exp.get("kwargs") or {}))}</code></td><td>{_status(bool(exp.get("success")))}</td>'
            f'<td class="num">{_e(exp.get("unexpected_count", 0))}</td>'
            f'<td><code>{_e(", ".join(exp.get("sample_ids", [])))}</code></td>'
            f'<td>{"" if observed is None else "<code>" + _e(_json(observed)) + "</code>"}</td></tr>')
    body.append('</table>')
    if other_gates:
        body += ['<h2>Other gates of this run</h2>', '<table>', '<tr><th>gate</th><th>status</th><th>detail</th></tr>']
        body += [f'<tr><td>{_e(name)}</td><td>{_status(ok)}</td><td>{_e(detail)}</td></tr>'
                 for name, ok, detail in other_gates]
        body.append('</table>')
    body.append('<p class="note">Rendered by cqia-registry from the validation results the stage wrote '
                '(Great Expectations Core, ephemeral context). Offline: no external styles or scripts.</p>')
    return _page(title, body)


def index_page(title: str, pages: list[dict[str, Any]]) -> str:
    """The index of gate runs: [{"href", "name", "suite", "rows", "success"}]."""
    body = [f'<h1>{_e(title)}</h1>', '<table>',
            '<tr><th>gate run</th><th>suite</th><th>rows</th><th>status</th></tr>']
    for page in pages:
        body.append(f'<tr><td><a href="{_e(page["href"])}">{_e(page["name"])}</a></td><td>{_e(page["suite"])}</td>'
                    f'<td class="num">{_e(page["rows"])}</td><td>{_status(bool(page["success"]))}</td></tr>')
    body.append('</table>')
    return _page(title, body)
