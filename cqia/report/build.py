"""The report stage's work: the release's statistics as DVC metrics, plot CSVs and SVG charts,
and a Data Docs page per gate run with the index linking them.

The entry (stages/report.py) reads the stages' summaries and metrics and names the output
directories; this module computes from those dicts and writes into the directories it is given.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from cqia.common.params import Category
from cqia.publish.stats import ALL, PLOTS, CategoryStats
from cqia.report.charts import chart_spec, chart_svg
from cqia.report.datadocs import gate_page, index_page

Writer = Callable[[Path, bytes], None]     # writes a whole file (Staging.write: a full disk names the file)


def csv_bytes(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def suite_notes(suites: Path, name: str) -> str:
    path = suites / f"{name}.json"
    if not path.is_file():
        return ""
    return str((orjson.loads(path.read_bytes()).get("meta") or {}).get("notes", ""))


def write_gate_page(write: Writer, docs: Path, href: str, gx: dict[str, Any], run_name: str, data_asset: str, suites: Path,
                    suite: str, datadocs: str, **gates: Any) -> dict[str, Any]:
    """Write the GX page of one gate run (its suite linked relative to where the page ends up);
    return its row of the index."""
    suite_file = suites / f"{suite}.json"
    suite_href = os.path.relpath(suite_file, datadocs) if suite_file.is_file() else ""
    html = gate_page(gx, run_name, data_asset, notes=suite_notes(suites, suite), suite_href=suite_href, **gates)
    write(docs / href, html.encode("utf-8"))
    expectations = gx.get("expectations", [])
    return {"href": href, "name": run_name, "suite": gx.get("suite", ""), "rows": gx.get("rows", 0),
            "success": bool(gx.get("success")), "evaluated": len(expectations),
            "unsuccessful": sum(1 for e in expectations if not e.get("success"))}


class Report:
    """The statistics of one release, per category and over all of them (ALL)."""

    def __init__(self, version: str, categories: Sequence[Category], parts: dict[str, dict[str, Any]],
                 release_metrics: dict[str, Any]) -> None:
        self.version, self.categories, self.parts, self.release_metrics = version, categories, parts, release_metrics
        self.stats = [CategoryStats.from_dict(cat.name, parts[cat.name]["statistics"]) for cat in categories]
        self.reasons = {cat.name: dict(release_metrics["categories"][cat.name]["rejected_by_reason"])
                        for cat in categories}
        self.total = self.stats[0].merged(self.stats[1:], ALL)
        self.all_reasons: dict[str, int] = {}
        for per in self.reasons.values():
            for reason, n in per.items():
                self.all_reasons[reason] = self.all_reasons.get(reason, 0) + n

    def metrics(self) -> dict[str, Any]:
        """What `dvc metrics show` shows."""
        return {"version": self.version,
                "categories": {s.name: s.metrics(self.reasons[s.name]) for s in self.stats},
                ALL: self.total.metrics(self.all_reasons)}

    def write_plots(self, write: Writer, plots: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """One CSV per plot and category (and ALL) under `plots`, and one SVG chart per plot."""
        by_plot: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in PLOTS}
        for s, per in [*((s, self.reasons[s.name]) for s in self.stats), (self.total, self.all_reasons)]:
            for name, rows in s.plot_rows(per).items():
                (plots / name).mkdir(exist_ok=True)
                write(plots / name / f"{s.name}.csv", csv_bytes(PLOTS[name].columns, rows))
                by_plot[name][s.name] = rows
        for name, rows in by_plot.items():
            write(plots / f"{name}.svg", chart_svg(chart_spec(name, rows)).encode("utf-8"))
        return by_plot

    def write_datadocs(self, write: Writer, docs: Path, datadocs: str, plots: str, suites: Path, schema_version: str,
                       stage_metrics: dict[str, dict[str, Any]], dedup: dict[str, Any]) -> None:
        """A page per gate run under `docs` and index.html; `datadocs` and `plots` are where the pages
        and the charts end up (the links between them are relative)."""
        charts = [{"href": os.path.relpath(Path(plots) / f"{name}.svg", datadocs), "title": PLOTS[name].title}
                  for name in PLOTS]
        pages = []
        for cat in self.categories:
            cmetrics = stage_metrics[cat.name]
            gates = cmetrics["gates"]
            acc = gates["accounting"]
            files = ", ".join(f"{f} (md5 {info['md5']}, {info['records']} records)"
                              for f, info in cmetrics["files"].items())
            pages.append(write_gate_page(
                write, docs, f"category-{cat.name}.html", gates["great_expectations"], f"category@{cat.name}",
                f"{cat.name} (accepted records)", suites, cat.suite, datadocs,
                other_gates=[("JSON Schema", True, f"schema version {schema_version}: "
                                                   f"{gates['schema']['rejected']} records rejected as schema_invalid"),
                             ("accounting", bool(acc["success"]),
                              f"raw {acc['raw']} = accepted {acc['accepted']} + rejected {acc['rejected']}")],
                context=[("stage", f"category@{cat.name}"), ("raw files", files)]))
        pages.append(write_gate_page(
            write, docs, "dedup.html", dedup["gates"]["great_expectations"], "dedup", "dedup decisions", suites,
            "dedup", datadocs,
            other_gates=[("JSON Schema", bool(dedup["gates"]["schema"]["success"]),
                          f"{dedup['gates']['schema']['decisions']} decisions checked against dedup.schema.json")],
            context=[("stage", "dedup"), ("accepted records compared", dedup["accepted"]),
                     ("exact duplicates", dedup["duplicates"]), ("near duplicates", dedup["near_duplicates"])]))
        for cat in self.categories:
            part = self.parts[cat.name]
            acc = part["gates"]["accounting"]
            pages.append(write_gate_page(
                write, docs, f"publish-{cat.name}.html", part["gates"]["great_expectations"], f"publish@{cat.name}",
                f"{cat.name} (lineage index)", suites, "publish", datadocs,
                other_gates=[("JSON Schema", bool(part["gates"]["schema"]["success"]),
                              f"{part['gates']['schema']['released_checked']} released records checked again"),
                             ("accounting", bool(acc["success"]),
                              f"accepted {acc['accepted']} = released {acc['released']} + duplicates {acc['duplicates']}")],
                context=[("stage", f"publish@{cat.name}"), ("raw records", part["raw"])]))
        release = self.release_metrics
        gx = release["gates"]["great_expectations"]
        pages.append(write_gate_page(
            write, docs, "release.html", gx, "merge", f"release {self.version}", suites, gx.get("suite") or "release",
            datadocs,
            other_gates=[("accounting", bool(release["gates"]["accounting"]["success"]),
                          "raw = released + rejected, per category; released ids = the summaries' counts")],
            context=[("stage", "merge"), ("released records", release["released"])]))
        write(docs / "index.html", index_page(f"Gate runs of release {self.version}", pages, charts).encode("utf-8"))
