"""Stage `report`: the release's statistics as DVC metrics and plots, and offline Data Docs.

    python -m stages.report --params params.yaml --stages-dir data/stages \\
        --release data/release --release-metrics data/release_metrics.json \\
        --schema schemas/record.schema.json --suites expectations \\
        --metrics data/reports/metrics.json --plots data/reports/plots \\
        --datadocs data/reports/datadocs

Reads `release.version` and `categories` from params. Writes per-category
statistics (`dvc metrics show`), one CSV per category and plot under
`--plots` (`dvc plots show`), and one HTML page per gate run under
`--datadocs` (see cqia/reports.py). Nothing here is in data/release, so
consumers of a release do not download the report.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson

from cqia.entry import arguments, run, sweep
from cqia.errors import CqiaError
from cqia.fileio import Staging, dumps_pretty, read_jsonl
from cqia.formats import FORMAT_NAMES
from cqia.params import load_categories, load_yaml
from cqia.reports import PLOTS, CategoryStats, gate_page, index_page
from cqia.schema import RecordSchema

ALL = "all"


def csv_bytes(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def read_json(path: Path, fix: str) -> Any:
    if not path.is_file():
        raise CqiaError("not found", where=str(path), fix=fix)
    return orjson.loads(path.read_bytes())


def suite_notes(suites: Path, name: str) -> str:
    path = suites / f"{name}.json"
    if not path.is_file():
        return ""
    return str((orjson.loads(path.read_bytes()).get("meta") or {}).get("notes", ""))


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.report", __doc__, ("--params", "--stages-dir", "--release", "--release-metrics",
                                                "--schema", "--suites", "--metrics", "--plots", "--datadocs"), argv)
    sweep(args.metrics, args.plots, args.datadocs)

    params = load_yaml(args.params)
    version = (params.get("release") or {}).get("version", "")
    categories = load_categories(params, FORMAT_NAMES, args.params)
    release_dir, stages_dir, suites = Path(args.release), Path(args.stages_dir), Path(args.suites)
    release_metrics = read_json(Path(args.release_metrics), "Run `dvc repro merge` first")
    schema_version = RecordSchema.from_file(args.schema).version

    stats: list[CategoryStats] = []
    reasons: dict[str, dict[str, int]] = {}
    for cat in categories:
        path = release_dir / cat.name / "train.jsonl"
        if not path.is_file():
            raise CqiaError(f"category '{cat.name}' is not in the release", where=str(path),
                            fix="Run `dvc repro merge` first")
        stats.append(CategoryStats(cat.name).add_all(read_jsonl(path)))
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
        for s, per in [*((s, reasons[s.name]) for s in stats), (total, all_reasons)]:
            for name, rows in s.plot_rows(per).items():
                (plots / name).mkdir(exist_ok=True)
                (plots / name / f"{s.name}.csv").write_bytes(csv_bytes(PLOTS[name][0], rows))

        docs = staging.directory(args.datadocs)
        pages = []
        for cat in categories:
            cmetrics = read_json(stages_dir / cat.name / "metrics.json", f"Run `dvc repro category@{cat.name}` first")
            gates = cmetrics["gates"]
            gx = gates["great_expectations"]
            acc = gates["accounting"]
            files = ", ".join(f"{f} (md5 {info['md5']}, {info['records']} records)"
                              for f, info in cmetrics["files"].items())
            html = gate_page(
                f"category {cat.name}: gate run", gx, suite_notes(suites, cat.suite),
                other_gates=[("JSON Schema", True, f"schema version {schema_version}: "
                                                   f"{gates['schema']['rejected']} records rejected as schema_invalid"),
                             ("accounting", bool(acc["success"]),
                              f"raw {acc['raw']} = accepted {acc['accepted']} + rejected {acc['rejected']}")],
                context=[("stage", f"category@{cat.name}"), ("raw files", files)])
            href = f"category-{cat.name}.html"
            (docs / href).write_text(html, encoding="utf-8")
            pages.append({"href": href, "name": f"category@{cat.name}", "suite": gx.get("suite", ""),
                          "rows": gx.get("rows", 0), "success": gx.get("success")})
        gx = release_metrics["gates"]["great_expectations"]
        html = gate_page(f"release {version}: gate run", gx, suite_notes(suites, gx.get("suite", "release")),
                         other_gates=[("accounting", bool(release_metrics["gates"]["accounting"]["success"]),
                                       "accepted = released + duplicates + near duplicates, per category")],
                         context=[("stage", "merge"), ("released records", release_metrics["released"])])
        (docs / "release.html").write_text(html, encoding="utf-8")
        pages.append({"href": "release.html", "name": "merge (release)", "suite": gx.get("suite", ""),
                      "rows": gx.get("rows", 0), "success": gx.get("success")})
        (docs / "index.html").write_text(index_page(f"Data Docs: gate runs of release {version}", pages),
                                         encoding="utf-8")
    return 0


if __name__ == "__main__":
    run(main)
