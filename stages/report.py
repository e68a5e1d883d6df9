"""Stage `report`: the release's statistics as DVC metrics and plots, and GX Data Docs of the gates.

    python -m stages.report --params params.yaml --stages-dir data/stages \\
        --release-metrics data/release_metrics.json \\
        --dedup-metrics data/dedup_metrics.json --publish-dir data/publish \\
        --schema schemas/record.schema.json --suites expectations \\
        --metrics data/reports/metrics.json --plots data/reports/plots \\
        --datadocs data/reports/datadocs

Reads `release.version` and `categories` from params. Writes per-category
statistics (`dvc metrics show`, see cqia/publish/stats.py; the publish stages
gathered them while writing the records, so no record is read here), one CSV per category and
plot under `--plots` (`dvc plots show`, whose page loads Vega from a CDN), the same plots as
static SVG charts `--plots/<plot>.svg` (every category in one chart; drawn offline, shown on
the Data Docs index), and under `--datadocs` one Great
Expectations Data Docs page per gate run (category-<name>.html for each
category stage, release.html for merge), rendered by GX from the results the
stages wrote to their metrics and made to read offline, plus index.html
linking them and showing the charts (see cqia/report/datadocs.py). The GX pages cost the stage about 2 s of
importing great_expectations, which happens only when they are rendered.
Nothing here is in data/release, so consumers of a release do not download
the report.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import orjson

from cqia.common.entry import arguments, run, sweep
from cqia.common.fileio import Staging, dumps_pretty, read_json
from cqia.common.params import load_categories, load_yaml
from cqia.gates.schema import RecordSchema
from cqia.publish.stats import ALL, PLOTS, CategoryStats
from cqia.report.charts import chart_spec, chart_svg
from cqia.report.datadocs import gate_page, index_page


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


def write_gate_page(staging: Staging, docs: Path, href: str, gx: dict[str, Any], run_name: str, data_asset: str, suites: Path,
                    suite: str, datadocs: str, **gates: Any) -> dict[str, Any]:
    """Write the GX page of one gate run (its suite linked relative to where the page ends up);
    return its row of the index."""
    suite_file = suites / f"{suite}.json"
    suite_href = os.path.relpath(suite_file, datadocs) if suite_file.is_file() else ""
    html = gate_page(gx, run_name, data_asset, notes=suite_notes(suites, suite), suite_href=suite_href, **gates)
    staging.write(docs / href, html.encode())
    expectations = gx.get("expectations", [])
    return {"href": href, "name": run_name, "suite": gx.get("suite", ""), "rows": gx.get("rows", 0),
            "success": bool(gx.get("success")), "evaluated": len(expectations),
            "unsuccessful": sum(1 for e in expectations if not e.get("success"))}


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.report", __doc__, ("--params", "--stages-dir", "--release-metrics",
                                                "--dedup-metrics", "--publish-dir",
                                                "--schema", "--suites", "--metrics", "--plots", "--datadocs"), argv)
    sweep(args.metrics, args.plots, args.datadocs)

    params = load_yaml(args.params)
    version = (params.get("release") or {}).get("version", "")
    categories = load_categories(params, args.params)
    stages_dir, suites = Path(args.stages_dir), Path(args.suites)
    release_metrics = read_json(Path(args.release_metrics), "Run `dvc repro merge` first")
    schema_version = RecordSchema.from_file(args.schema).version

    stats: list[CategoryStats] = []
    reasons: dict[str, dict[str, int]] = {}
    parts: dict[str, dict[str, Any]] = {}
    for cat in categories:
        part = read_json(Path(args.publish_dir) / f"{cat.name}.json", f"Run `dvc repro publish@{cat.name}` first")
        parts[cat.name] = part
        stats.append(CategoryStats.from_dict(cat.name, part["statistics"]))
        reasons[cat.name] = dict(release_metrics["categories"][cat.name]["rejected_by_reason"])
    total = stats[0].merged(stats[1:], ALL)
    all_reasons: dict[str, int] = {}
    for per in reasons.values():
        for reason, n in per.items():
            all_reasons[reason] = all_reasons.get(reason, 0) + n

    metrics = {"version": version,
               "categories": {s.name: s.metrics(reasons[s.name]) for s in stats},
               ALL: total.metrics(all_reasons)}

    with Staging() as staging:
        with staging.open(args.metrics) as out:
            out.write(dumps_pretty(metrics))

        plots = staging.directory(args.plots)
        by_plot: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in PLOTS}
        for s, per in [*((s, reasons[s.name]) for s in stats), (total, all_reasons)]:
            for name, rows in s.plot_rows(per).items():
                (plots / name).mkdir(exist_ok=True)
                staging.write(plots / name / f"{s.name}.csv", csv_bytes(PLOTS[name].columns, rows))
                by_plot[name][s.name] = rows
        charts = []
        for name, rows in by_plot.items():
            staging.write(plots / f"{name}.svg", chart_svg(chart_spec(name, rows)).encode())
            charts.append({"href": os.path.relpath(Path(args.plots) / f"{name}.svg", args.datadocs),
                           "title": PLOTS[name].title})

        docs = staging.directory(args.datadocs)
        pages = []
        for cat in categories:
            cmetrics = read_json(stages_dir / cat.name / "metrics.json", f"Run `dvc repro category@{cat.name}` first")
            gates = cmetrics["gates"]
            acc = gates["accounting"]
            files = ", ".join(f"{f} (md5 {info['md5']}, {info['records']} records)"
                              for f, info in cmetrics["files"].items())
            pages.append(write_gate_page(
                staging, docs, f"category-{cat.name}.html", gates["great_expectations"], f"category@{cat.name}",
                f"{cat.name} (accepted records)", suites, cat.suite, args.datadocs,
                other_gates=[("JSON Schema", True, f"schema version {schema_version}: "
                                                   f"{gates['schema']['rejected']} records rejected as schema_invalid"),
                             ("accounting", bool(acc["success"]),
                              f"raw {acc['raw']} = accepted {acc['accepted']} + rejected {acc['rejected']}")],
                context=[("stage", f"category@{cat.name}"), ("raw files", files)]))
        dedup = read_json(Path(args.dedup_metrics), "Run `dvc repro dedup` first")
        pages.append(write_gate_page(
            staging, docs, "dedup.html", dedup["gates"]["great_expectations"], "dedup", "dedup decisions", suites,
            "dedup", args.datadocs,
            other_gates=[("JSON Schema", bool(dedup["gates"]["schema"]["success"]),
                          f"{dedup['gates']['schema']['decisions']} decisions checked against dedup.schema.json")],
            context=[("stage", "dedup"), ("accepted records compared", dedup["accepted"]),
                     ("exact duplicates", dedup["duplicates"]), ("near duplicates", dedup["near_duplicates"])]))
        for cat in categories:
            part = parts[cat.name]
            acc = part["gates"]["accounting"]
            pages.append(write_gate_page(
                staging, docs, f"publish-{cat.name}.html", part["gates"]["great_expectations"], f"publish@{cat.name}",
                f"{cat.name} (lineage index)", suites, "publish", args.datadocs,
                other_gates=[("JSON Schema", bool(part["gates"]["schema"]["success"]),
                              f"{part['gates']['schema']['released_checked']} released records checked again"),
                             ("accounting", bool(acc["success"]),
                              f"accepted {acc['accepted']} = released {acc['released']} + duplicates {acc['duplicates']}")],
                context=[("stage", f"publish@{cat.name}"), ("raw records", part["raw"])]))
        gx = release_metrics["gates"]["great_expectations"]
        pages.append(write_gate_page(
            staging, docs, "release.html", gx, "merge", f"release {version}", suites, gx.get("suite") or "release",
            args.datadocs,
            other_gates=[("accounting", bool(release_metrics["gates"]["accounting"]["success"]),
                          "raw = released + rejected, per category; released ids = the summaries' counts")],
            context=[("stage", "merge"), ("released records", release_metrics["released"])]))
        staging.write(docs / "index.html", index_page(f"Gate runs of release {version}", pages, charts).encode())
    return 0


if __name__ == "__main__":
    run(main)
