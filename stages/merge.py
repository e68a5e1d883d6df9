"""Stage `merge`: every category's accepted records -> data/release/.

    python -m stages.merge --params params.yaml --stages-dir data/stages \\
        --schema schemas/record.schema.json --suite expectations/release.json \\
        --out data/release --metrics data/release_metrics.json

Reads `release`, `categories` and `neardup` from params. Drops exact
duplicates across the release (keeping the first in category order), then
near duplicates (MinHash LSH over character n-grams, cqia/neardup.py: a first
pass over the accepted records finds them; the first in category order is
kept), writes JSON Lines and
Parquet per category, the full file, lineage.jsonl, manifest.json and the
dataset card, runs the release gate, then puts the directory in place whole.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from cqia.entry import arguments, run, sweep
from cqia.errors import CqiaError, GateFailed
from cqia.fileio import Staging, dumps_line, dumps_pretty, read_jsonl
from cqia.formats import FORMAT_NAMES
from cqia.lineage import FULL_FILE, INDEX_FILE, LINEAGE_FILE, LineageWriter
from cqia.neardup import Match, NearDupConfig, NearDupIndex, clusters, record_texts
from cqia.params import load_categories, load_yaml
from cqia.progress import progress
from cqia.records import RECORD_KEYS
from cqia.release import dataset_card, dedup_key, parquet_schema
from cqia.schema import RecordSchema

BATCH = 10_000


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.merge", __doc__, ("--params", "--stages-dir", "--schema", "--suite", "--out", "--metrics"), argv)
    out_dir, stages_dir = Path(args.out), Path(args.stages_dir)
    sweep(out_dir, args.metrics)

    params = load_yaml(args.params)
    release = params.get("release") or {}
    version = release.get("version")
    if not isinstance(version, str) or not version:
        raise CqiaError("release.version is missing", where=args.params, fix="Set it, e.g. 'v0.1'")
    categories = load_categories(params, FORMAT_NAMES, args.params)
    neardup = NearDupConfig.from_params(params.get("neardup"), args.params)
    near, near_ids = find_near_duplicates(stages_dir, categories, neardup)
    near_kept = clusters(near)
    position = -1
    schema = RecordSchema.from_file(args.schema)
    from cqia.gx_gate import failure_report, load_suite, run_suite

    suite = load_suite(args.suite)

    import pyarrow as pa
    import pyarrow.parquet as pq

    pschema = parquet_schema()
    seen: dict[bytes, str] = {}
    summary: list[dict[str, Any]] = []
    raw_inputs: dict[str, str] = {}
    example = None

    with Staging() as staging:
        tmp = staging.directory(out_dir)
        with open(tmp / FULL_FILE, "wb") as full, open(tmp / LINEAGE_FILE, "wb") as lineage_handle:
            lineage_out = LineageWriter(lineage_handle)
            for cat in categories:
                cdir = stages_dir / cat.name
                metrics_path = cdir / "metrics.json"
                if not metrics_path.is_file():
                    raise CqiaError(f"no stage output for category '{cat.name}'", where=str(metrics_path),
                                    fix=f"Run `dvc repro category@{cat.name}` first")
                cmetrics = orjson.loads(metrics_path.read_bytes())
                for file, info in cmetrics["files"].items():
                    raw_inputs[file] = info["md5"]
                (tmp / cat.name).mkdir()
                released = duplicates = near_duplicates = 0
                batch: list[dict[str, Any]] = []
                with open(tmp / cat.name / "train.jsonl", "wb") as cat_out, \
                        pq.ParquetWriter(tmp / cat.name / "train.parquet", pschema) as writer:
                    for entry in progress(read_jsonl(cdir / "accepted.jsonl"), f"merge {cat.name}",
                                          total=cmetrics["accepted"]):
                        position += 1
                        record, lineage = entry["record"], entry["lineage"]
                        record = {k: record[k] for k in RECORD_KEYS}
                        key = dedup_key(record)
                        first = seen.get(key)
                        if first is not None:
                            duplicates += 1
                            reason = f"duplicate_of:{first}"
                            lineage.update(status="rejected", reason=reason,
                                           detail=f"same instruction, input and output as {first}")
                            lineage["steps"].append({"step": "merge", "result": "reject", "reason": reason,
                                                     "duplicate_of": first})
                            lineage["release"] = version
                            lineage_out.write(lineage)
                            continue
                        match = near.get(position)
                        if match is not None:
                            near_duplicates += 1
                            kept = near_ids[match.kept]
                            reason = f"near_duplicate_of:{kept}"
                            lineage.update(status="rejected", reason=reason, detail=near_detail(match, kept, neardup))
                            lineage["steps"].append({"step": "merge", "result": "reject", "reason": reason,
                                                     "near_duplicate_of": kept, "similarity": match.similarity,
                                                     "output_similarity": match.output_similarity,
                                                     "kept_because": "first in release order"})
                            lineage["release"] = version
                            lineage_out.write(lineage)
                            continue
                        if not schema.is_valid(record):
                            raise GateFailed(f"record {record['id']} fails the schema at the release gate "
                                             f"({schema.explain(record)})", where=f"category {cat.name}")
                        seen[key] = lineage["id"]  # the same string object the lineage index keeps
                        released += 1
                        example = example or record
                        line = dumps_line(record)
                        cat_out.write(line)
                        record_at = (full.tell(), line)
                        full.write(line)
                        batch.append(record)
                        if len(batch) >= BATCH:
                            writer.write_table(pa.Table.from_pylist(batch, schema=pschema))
                            batch = []
                        lineage.update(status="released", release=version)
                        merge_step: dict[str, Any] = {"step": "merge", "result": "pass"}
                        if position in near_kept:
                            merge_step["near_duplicates"] = [near_ids[i] for i in near_kept[position]]
                        lineage["steps"].append(merge_step)
                        lineage_out.write(lineage, record_at)
                    if batch:
                        writer.write_table(pa.Table.from_pylist(batch, schema=pschema))
                rejected = Counter(cmetrics["rejected_by_reason"])
                for entry in read_jsonl(cdir / "rejects.jsonl"):
                    entry["release"] = version
                    lineage_out.write(entry)
                if duplicates:
                    rejected["duplicate_of"] = duplicates
                if near_duplicates:
                    rejected["near_duplicate_of"] = near_duplicates
                if cmetrics["accepted"] != released + duplicates + near_duplicates:
                    raise GateFailed(f"accounting gate failed: {cmetrics['accepted']} accepted but {released} "
                                     f"released + {duplicates} duplicates + {near_duplicates} near duplicates",
                                     where=f"category {cat.name}")
                summary.append({"name": cat.name, "raw": cmetrics["raw"], "released": released,
                                "rejected": sum(rejected.values()),
                                "rejected_by_reason": dict(sorted(rejected.items())),
                                "source": cat.source, "construction": cat.construction})

        del seen  # the exact-duplicate map is done with; free it before the release gate's frame
        import pandas as pd

        expected = [c.name for c in categories]
        total = sum(c["released"] for c in summary)
        extra = [{"type": "expect_column_distinct_values_to_equal_set",
                  "kwargs": {"column": "category", "value_set": expected}},
                 {"type": "expect_table_row_count_to_equal", "kwargs": {"value": total}}]
        # Unique ids across the release are checked here, by the suite, on every released id.
        gate_ids, gate_cats = lineage_out.released()
        gx_result = run_suite(suite, [pd.DataFrame({"id": gate_ids, "category": gate_cats})], extra)
        del gate_ids, gate_cats
        if not gx_result["success"]:
            raise GateFailed(failure_report(gx_result, f"release {version} ({args.suite})"))

        lineage_out.write_index(tmp / INDEX_FILE)
        card_release = dict(release)
        (tmp / "README.md").write_text(dataset_card(card_release, summary, example, FULL_FILE), encoding="utf-8")
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            with open(path, "rb") as handle:
                files[path.relative_to(tmp).as_posix()] = {"sha256": hashlib.file_digest(handle, "sha256").hexdigest(),
                                                          "bytes": path.stat().st_size}
        manifest = {
            "name": release.get("name", "COIG-CQIA"),
            "version": version,
            "schema_version": schema.version,
            "released": total,
            "categories": {c["name"]: {k: c[k] for k in ("raw", "released", "rejected", "rejected_by_reason")}
                           for c in summary},
            "raw_inputs": dict(sorted(raw_inputs.items())),
            "neardup": {**neardup.as_dict(), "clusters": len(near_kept), "near_duplicates": len(near)},
            "files": files,
        }
        (tmp / "manifest.json").write_bytes(dumps_pretty(manifest))
        metrics = {"version": version, "released": total,
                   "categories": manifest["categories"],
                   "neardup": manifest["neardup"],
                   "gates": {"great_expectations": gx_result,
                             "accounting": {"success": True}}}
        with staging.open(args.metrics) as out:
            out.write(dumps_pretty(metrics))
    return 0


def find_near_duplicates(stages_dir: Path, categories, config: NearDupConfig) -> tuple[dict[int, Match], list[str]]:
    """First pass: near duplicates among every category's accepted records, in release order.

    Returns {position: Match} (positions count accepted records across categories, in the
    order the second pass reads them) and the id at each position.
    """
    ids: list[str] = []
    if not config.enabled:
        return {}, ids
    index = NearDupIndex(config)
    for cat in categories:
        path = stages_dir / cat.name / "accepted.jsonl"
        if not path.is_file():
            raise CqiaError(f"no stage output for category '{cat.name}'", where=str(path),
                            fix=f"Run `dvc repro category@{cat.name}` first")
        for entry in progress(read_jsonl(path), f"near duplicates: {cat.name}"):
            record = entry["record"]
            index.add(*record_texts(record), exact_key=dedup_key(record))
            ids.append(record["id"])
    return index.matches(), ids


def near_detail(match: Match, kept: str, config: NearDupConfig) -> str:
    return (f"near duplicate of {kept} (kept: first in release order): estimated Jaccard similarity "
            f"{match.similarity:.2f} of instruction+input+output and {match.output_similarity:.2f} of output, "
            f"over character {config.ngram}-grams; threshold {config.threshold}")


if __name__ == "__main__":
    run(main)
