"""Stage `merge`: every category's part of the release -> the release's manifest and dataset card.

    python -m stages.merge --params params.yaml --publish-dir data/publish \\
        --lineage-dir data/release/lineage --schema schemas/record.schema.json \\
        --suite expectations/release.json --manifest data/release/manifest.json \\
        --card data/release/README.md --metrics data/release_metrics.json

Reads `release`, `categories` and `neardup` from params, each category's
summary from its `publish` stage, and the lineage indexes (for the release
gate). The records themselves were written by the `publish@<category>` stages;
merge reads none of them, so its cost does not grow with the records'
size. The release gate (expectations/release.json, Great Expectations) runs
on every released id: unique across the release, every category present,
the row count the summaries add up to. Writes `manifest.json` (counts,
schema version, raw inputs, the sha256 of every release file) and the
dataset card (cqia/publish/card.py: features from the schema, split sizes from the
summaries, licences, sources and PII rules from each category's params), both
or neither.
"""

from __future__ import annotations

from pathlib import Path

from cqia.common.entry import arguments, run, sweep
from cqia.common.errors import GateFailed
from cqia.common.fileio import Staging, dumps_pretty
from cqia.common.params import load_categories, load_yaml
from cqia.dedup.neardup import NearDupConfig
from cqia.gates.schema import RecordSchema
from cqia.publish.manifest import Assembly, gate_expectations, read_summaries, release_settings


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.merge", __doc__, ("--params", "--publish-dir", "--lineage-dir", "--schema", "--suite",
                                               "--manifest", "--card", "--metrics"), argv)
    sweep(args.manifest, args.card, args.metrics)
    from cqia.gates.gx import GateProcess, failure_report, load_suite

    suite = load_suite(args.suite)
    params = load_yaml(args.params)
    release = release_settings(params, args.params)
    categories = load_categories(params, args.params)
    assembly = Assembly(release, NearDupConfig.from_params(params.get("neardup"), args.params),
                        RecordSchema.from_file(args.schema))
    parts = read_summaries(categories, Path(args.publish_dir))
    gate = GateProcess(suite, gate_expectations(categories, parts))  # GX's import overlaps reading the indexes
    import pyarrow as pa

    ids = [assembly.add(cat, part, Path(args.lineage_dir)) for cat, part in zip(categories, parts)]
    gate.validate_table(pa.concat_tables(ids))      # one frame: ids unique across the whole release
    del ids
    gx_result = gate.result()
    if not gx_result["success"]:
        raise GateFailed(failure_report(gx_result, f"release {assembly.version} ({args.suite})"))
    card, manifest, metrics = assembly.outputs(gx_result)
    with Staging() as staging:
        for path, data in ((args.card, card), (args.manifest, dumps_pretty(manifest)),
                           (args.metrics, dumps_pretty(metrics))):
            with staging.open(path) as out:
                out.write(data)
    return 0


if __name__ == "__main__":
    run(main)
