"""Stage `publish@<name>`: one category's accepted records and dedup decisions -> its part of the release.

    python -m stages.publish --category zhihu \\
        --accepted data/stages/zhihu/accepted.jsonl.zst --accepted-lineage data/stages/zhihu/lineage.jsonl.zst \\
        --rejects data/stages/zhihu/rejects.jsonl --category-metrics data/stages/zhihu/metrics.json \\
        --dedup data/dedup/zhihu.jsonl --schema schemas/record.schema.json --suite expectations/publish.json \\
        --out data/release/zhihu --lineage data/release/lineage/zhihu --summary data/publish/zhihu.json

Reads no params. Writes the category's released records in the Hugging Face
layout (`train.jsonl`, `train.parquet`), its lineage (`lineage.jsonl`: every
raw record of the category, released or rejected, with every step) and the
lineage index (`index.parquet`, cqia/common/lineage.py), and a summary for the merge
and report stages (counts by reason, sha256 of each file, an example record,
the released records' statistics). Each category has its own stage, so a
change to one category rebuilds only its part. A released record's line is
the category stage's line, copied (the stage's files are zstd-compressed); its lineage line gets its status and dedup
step spliced in (cqia/common/lineage.py `final_line`); the Parquet file is built by
Arrow's JSON reader from the same lines. Gates: every released record passes
the JSON Schema again; the lineage index passes the Great Expectations suite
(every raw record exactly once, released or rejected with a reason code);
accepted = released + dropped duplicates (accounting).
"""

from __future__ import annotations

from collections import Counter
from itertools import zip_longest
from pathlib import Path
from typing import Any

import orjson

from cqia.gates.accounting import check_accounting
from cqia.common.entry import arguments, run, sweep
from cqia.common.errors import CqiaError, GateFailed
from cqia.common.fileio import HashingWriter, Staging, dumps_pretty, file_digest, open_read, read_json, read_jsonl
from cqia.common.lineage import (INDEX_FILE, LINEAGE_FILE, PARQUET_FILE, RECORDS_FILE, LineageWriter, dedup_pass_step,
                                 dedup_reject_step, final_line, lineage_path, records_path)
from cqia.common.progress import progress
from cqia.publish.card import parquet_schema
from cqia.publish.stats import CategoryStats
from cqia.gates.schema import RecordSchema

BATCH = 10_000


def load_decisions(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise CqiaError("no dedup decisions for this category", where=str(path), fix="Run `dvc repro dedup` first")
    return {d["id"]: d for d in read_jsonl(path)}


def dedup_step(decision: dict[str, Any] | None) -> tuple[dict[str, Any], str | None, str]:
    """The lineage step of the dedup decision, the reject reason (None: released) and its detail."""
    if decision is None or "reason" not in decision:
        return dedup_pass_step(decision and decision.get("near_duplicates")), None, ""
    step = dedup_reject_step(decision)
    if "duplicate_of" in decision:
        return step, decision["reason"], f"same instruction, input and output as {decision['duplicate_of']}"
    kept = decision["near_duplicate_of"]
    return step, decision["reason"], (
        f"near duplicate of {kept} (kept: first in release order): estimated Jaccard similarity "
        f"{decision['similarity']:.2f} of instruction+input+output and {decision['output_similarity']:.2f} of output, "
        f"over character {decision['ngram']}-grams; threshold {decision['threshold']}")


def parquet_batch(lines: list[bytes], pschema):
    """The Arrow table of released record lines (Arrow's JSON reader: 4x faster than from_pylist)."""
    import pyarrow as pa
    import pyarrow.json as pj

    options = pj.ParseOptions(explicit_schema=pschema, unexpected_field_behavior="error")
    # Arrow reads in blocks, and a record must fit in one.
    blocks = pj.ReadOptions(block_size=max(1 << 20, 2 * max(map(len, lines))))
    return pj.read_json(pa.BufferReader(b"".join(lines)), read_options=blocks, parse_options=options).select(pschema.names)


def write_batch(parquet, lines: list[bytes], pschema) -> int:
    """Write released record lines to the Parquet file; return their size as Arrow data (what
    `datasets` counts as a split's num_bytes when it reads the file)."""
    table = parquet_batch(lines, pschema)
    parquet.write_table(table)
    return table.nbytes


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.publish", __doc__, ("--category", "--accepted", "--accepted-lineage", "--rejects",
                                                 "--category-metrics", "--dedup", "--schema", "--suite", "--out",
                                                 "--lineage", "--summary"), argv)
    out_dir, lineage_dir = Path(args.out), Path(args.lineage)
    sweep(out_dir, lineage_dir, args.summary)
    name = args.category
    cmetrics = read_json(Path(args.category_metrics), f"Run `dvc repro category@{name}` first")
    from cqia.gates.gx import GateProcess, failure_report, load_suite

    gate = GateProcess(load_suite(args.suite), [{"type": "expect_table_row_count_to_equal",
                                                 "kwargs": {"value": cmetrics["raw"]}}])
    decisions = load_decisions(Path(args.dedup))
    schema = RecordSchema.from_file(args.schema)

    import pyarrow as pa
    import pyarrow.parquet as pq

    pschema = parquet_schema()
    GX_SCHEMA = pa.schema([("id", pa.string()), ("status", pa.string()), ("reason", pa.string())])
    released = 0
    arrow_bytes = 0          # the released records as Arrow data: the split's num_bytes in the dataset card
    dropped: Counter[str] = Counter()
    near_kept = 0
    example = None
    stats = CategoryStats(name)
    files: dict[str, dict[str, Any]] = {}
    with Staging() as staging:
        out, lin = staging.directory(out_dir), staging.directory(lineage_dir)
        with open_read(args.accepted) as records_in, open_read(args.accepted_lineage) as lineage_in, \
                staging.create(out / RECORDS_FILE) as records_handle, staging.create(lin / LINEAGE_FILE) as lineage_handle, \
                staging.create(out / PARQUET_FILE) as parquet_handle, pq.ParquetWriter(parquet_handle, pschema) as parquet:
            records_out, lineage_hashed = HashingWriter(records_handle), HashingWriter(lineage_handle)
            lineage_out = LineageWriter(lineage_hashed)
            batch: list[bytes] = []
            pairs = zip_longest(records_in, lineage_in)
            for n, (line, lineage) in enumerate(progress(pairs, f"publish {name}", total=cmetrics["accepted"]), 1):
                record = orjson.loads(line) if line is not None else None
                rid = record["id"] if record else None
                step, reason, detail = dedup_step(decisions.pop(rid, None))
                status = "released" if reason is None else "rejected"
                final = final_line(lineage, rid, status, step, reason and {"reason": reason, "detail": detail}) \
                    if rid is not None and lineage is not None else None
                if final is None:
                    raise GateFailed(f"line {n} of the accepted records and of their lineage are not the same record "
                                     f"({rid or 'no record'})", where=args.accepted_lineage,
                                     fix=f"Run `dvc repro -f category@{name}`")
                if reason is not None:
                    dropped[reason.partition(":")[0]] += 1
                    lineage_out.write_line(final, rid, name, False, reason)
                    continue
                if not schema.is_valid(record):
                    raise GateFailed(f"record {rid} fails the schema at the release gate "
                                     f"({schema.explain(record)})", where=f"category {name}")
                released += 1
                near_kept += "near_duplicates" in step
                example = example or record
                stats.add(record)
                record_at = (records_out.tell(), line)
                records_out.write(line)
                batch.append(line)
                if len(batch) >= BATCH:
                    arrow_bytes += write_batch(parquet, batch, pschema)
                    batch = []
                lineage_out.write_line(final, rid, name, True, None, record_at)
            if batch:
                arrow_bytes += write_batch(parquet, batch, pschema)
            for entry in read_jsonl(args.rejects):
                lineage_out.write(entry)
        if decisions:
            unknown = sorted(decisions)
            raise GateFailed(f"the dedup decisions name {len(unknown)} id(s) that are not accepted records of this "
                             f"category, e.g. {unknown[0]}", where=args.dedup, fix="Run `dvc repro dedup`")
        index = lineage_out.index_table()
        gate.validate_table(index.select(["id", "status", "reason"]).cast(GX_SCHEMA))
        result = gate.result()
        if not result["success"]:
            raise GateFailed(failure_report(result, f"category {name} ({args.suite})"))
        with staging.create(lin / INDEX_FILE) as index_handle:
            lineage_out.write_index(index_handle, index)
        accounting = check_accounting("accepted", cmetrics["accepted"], {"released": released, "duplicates": sum(dropped.values())},
                         where=f"category {name}")
        rejected = Counter(cmetrics["rejected_by_reason"]) + dropped
        written = {records_path(name): records_out, lineage_path(name): lineage_hashed}
        for path in sorted(out.iterdir()) + sorted(lin.iterdir()):
            relpath = f"{name}/{path.name}" if path.parent == out else lineage_path(name, path.name)
            if relpath in written:         # hashed while written
                files[relpath] = {"sha256": written[relpath].sha256(), "bytes": written[relpath].size}
                continue
            files[relpath] = {"sha256": file_digest(path, "sha256"), "bytes": path.stat().st_size}
        summary = {"category": name, "raw": cmetrics["raw"], "accepted": cmetrics["accepted"],
                   "released": released, "num_bytes": arrow_bytes, "rejected": sum(rejected.values()),
                   "rejected_by_reason": dict(sorted(rejected.items())),
                   "near_duplicate_clusters": near_kept,
                   "raw_inputs": {file: info["md5"] for file, info in cmetrics["files"].items()},
                   "files": files, "example": example, "statistics": stats.as_dict(),
                   "gates": {"schema": {"released_checked": released, "success": True},
                             "accounting": accounting,
                             "great_expectations": result}}
        with staging.open(args.summary) as handle:
            handle.write(dumps_pretty(summary))
    return 0


if __name__ == "__main__":
    run(main)
