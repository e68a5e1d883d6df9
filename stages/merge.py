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

import hashlib
from pathlib import Path
from typing import Any

import orjson

from cqia.gates.accounting import check_accounting
from cqia.common.entry import arguments, run, sweep
from cqia.common.errors import CqiaError, GateFailed
from cqia.common.fileio import Staging, dumps_pretty
from cqia.common.lineage import INDEX_FILE
from cqia.common.params import load_categories, load_yaml
from cqia.common.pii_kinds import LABELS as PII_LABELS
from cqia.common.pii_kinds import MASKS as PII_MASKS
from cqia.common.pii_kinds import PII_FIELDS
from cqia.dedup.neardup import NearDupConfig
from cqia.gates.schema import RecordSchema
from cqia.publish.card import PiiLegend, dataset_card

CARD = "README.md"


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.merge", __doc__, ("--params", "--publish-dir", "--lineage-dir", "--schema", "--suite",
                                               "--manifest", "--card", "--metrics"), argv)
    sweep(args.manifest, args.card, args.metrics)
    from cqia.gates.gx import GateProcess, failure_report, load_suite

    suite = load_suite(args.suite)
    params = load_yaml(args.params)
    release = params.get("release") or {}
    version = release.get("version")
    if not isinstance(version, str) or not version:
        raise CqiaError("release.version is missing", where=args.params, fix="Set it, e.g. 'v0.1'")
    if "license" in release:
        raise CqiaError("release.license: the licence is per source category", where=args.params,
                        fix="Remove it and set categories.<name>.license (and license_terms for `other`)")
    categories = load_categories(params, args.params)
    neardup = NearDupConfig.from_params(params.get("neardup"), args.params)
    schema = RecordSchema.from_file(args.schema)
    parts = []
    for cat in categories:
        path = Path(args.publish_dir) / f"{cat.name}.json"
        if not path.is_file():
            raise CqiaError(f"category '{cat.name}' is not published", where=str(path),
                            fix=f"Run `dvc repro publish@{cat.name}` first")
        parts.append(orjson.loads(path.read_bytes()))
    total = sum(part["released"] for part in parts)
    # Started before the indexes are read, so that GX's import overlaps the reading.
    gate = GateProcess(suite, [{"type": "expect_column_distinct_values_to_equal_set",
                                "kwargs": {"column": "category", "value_set": [c.name for c in categories]}},
                               {"type": "expect_table_row_count_to_equal", "kwargs": {"value": total}}])

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    summary: list[dict[str, Any]] = []
    files: dict[str, Any] = {}
    raw_inputs: dict[str, str] = {}
    example = None
    clusters = near_duplicates = 0
    released_ids = []
    for cat, part in zip(categories, parts):
        index = pq.read_table(Path(args.lineage_dir) / cat.name / INDEX_FILE, columns=["id", "status"])
        ids = index.filter(pc.equal(index.column("status"), "released")).column("id")
        if len(ids) != part["released"]:
            raise GateFailed(f"accounting gate failed: the summary says {part['released']} released, the lineage "
                             f"index has {len(ids)}", where=f"category {cat.name}",
                             fix=f"Run `dvc repro publish@{cat.name}`")
        check_accounting("raw", part["raw"], {"released": part["released"], "rejected": part["rejected"]},
                         where=f"category {cat.name}", fix=f"Run `dvc repro publish@{cat.name}`")
        released_ids.append(pa.table({"id": ids, "category": pa.array([cat.name] * len(ids), pa.string())}))
        files.update(part["files"])
        raw_inputs.update(part["raw_inputs"])
        example = example or part["example"]
        clusters += part["near_duplicate_clusters"]
        near_duplicates += part["rejected_by_reason"].get("near_duplicate_of", 0)
        summary.append({**{k: part[k] for k in ("raw", "released", "rejected", "rejected_by_reason", "num_bytes")},
                        "name": cat.name, "source": cat.source, "source_dataset": cat.source_dataset,
                        "construction": cat.construction, "license": cat.license,
                        "license_terms": cat.license_terms, "copyright": cat.defaults.get("copyright", ""),
                        "pii": cat.rules.get("pii") or {},
                        "parquet_bytes": part["files"][f"{cat.name}/train.parquet"]["bytes"]})
    # One frame of every released id: uniqueness is checked across the whole release.
    gate.validate_table(pa.concat_tables(released_ids))
    del released_ids
    gx_result = gate.result()
    if not gx_result["success"]:
        raise GateFailed(failure_report(gx_result, f"release {version} ({args.suite})"))

    neardup_stats = {**neardup.as_dict(), "clusters": clusters, "near_duplicates": near_duplicates}
    card = dataset_card(dict(release), summary, example, schema.schema, PiiLegend(PII_FIELDS, PII_LABELS, PII_MASKS),
                        neardup_stats).encode("utf-8")
    files[CARD] = {"sha256": hashlib.sha256(card).hexdigest(), "bytes": len(card)}
    manifest = {
        "name": release.get("name", "COIG-CQIA"),
        "version": version,
        "schema_version": schema.version,
        "released": total,
        "categories": {c["name"]: {k: c[k] for k in ("raw", "released", "rejected", "rejected_by_reason")}
                       for c in summary},
        "raw_inputs": dict(sorted(raw_inputs.items())),
        "neardup": neardup_stats,
        "files": dict(sorted(files.items())),
    }
    metrics = {"version": version, "released": total, "categories": manifest["categories"],
               "neardup": manifest["neardup"],
               "gates": {"great_expectations": gx_result, "accounting": {"success": True}}}
    with Staging() as staging:
        with staging.open(args.card) as out:
            out.write(card)
        with staging.open(args.manifest) as out:
            out.write(dumps_pretty(manifest))
        with staging.open(args.metrics) as out:
            out.write(dumps_pretty(metrics))
    return 0


if __name__ == "__main__":
    run(main)
