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

from pathlib import Path

from cqia.common.entry import arguments, run, sweep
from cqia.common.fileio import Staging, dumps_pretty, read_json
from cqia.common.layout import STAGE_METRICS_FILE
from cqia.common.params import load_categories, load_yaml
from cqia.gates.schema import RecordSchema
from cqia.report.build import Report


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.report", __doc__, ("--params", "--stages-dir", "--release-metrics",
                                                "--dedup-metrics", "--publish-dir",
                                                "--schema", "--suites", "--metrics", "--plots", "--datadocs"), argv)
    sweep(args.metrics, args.plots, args.datadocs)
    params = load_yaml(args.params)
    categories = load_categories(params, args.params)
    release_metrics = read_json(Path(args.release_metrics), "Run `dvc repro merge` first")
    parts = {cat.name: read_json(Path(args.publish_dir) / f"{cat.name}.json", f"Run `dvc repro publish@{cat.name}` first")
             for cat in categories}
    report = Report((params.get("release") or {}).get("version", ""), categories, parts, release_metrics)
    with Staging() as staging:
        with staging.open(args.metrics) as out:
            out.write(dumps_pretty(report.metrics()))
        report.write_plots(staging.write, staging.directory(args.plots))
        stage_metrics = {cat.name: read_json(Path(args.stages_dir) / cat.name / STAGE_METRICS_FILE,
                                             f"Run `dvc repro category@{cat.name}` first") for cat in categories}
        dedup = read_json(Path(args.dedup_metrics), "Run `dvc repro dedup` first")
        report.write_datadocs(staging.write, staging.directory(args.datadocs), args.datadocs, args.plots, Path(args.suites),
                              RecordSchema.from_file(args.schema).version, stage_metrics, dedup)
    return 0


if __name__ == "__main__":
    run(main)
