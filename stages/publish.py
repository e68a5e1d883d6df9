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

from pathlib import Path

from cqia.common.entry import arguments, run, sweep
from cqia.common.fileio import HashingWriter, Staging, dumps_pretty, file_digest, open_read, read_json, read_jsonl
from cqia.common.lineage import INDEX_FILE, LINEAGE_FILE, PARQUET_FILE, RECORDS_FILE, LineageWriter, lineage_path
from cqia.gates.schema import RecordSchema
from cqia.publish.card import parquet_schema
from cqia.publish.core import Publication, load_decisions


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.publish", __doc__, ("--category", "--accepted", "--accepted-lineage", "--rejects",
                                                 "--category-metrics", "--dedup", "--schema", "--suite", "--out",
                                                 "--lineage", "--summary"), argv)
    out_dir, lineage_dir, name = Path(args.out), Path(args.lineage), args.category
    sweep(out_dir, lineage_dir, args.summary)
    cmetrics = read_json(Path(args.category_metrics), f"Run `dvc repro category@{name}` first")
    import pyarrow.parquet as pq

    from cqia.gates.gx import GateProcess, load_suite

    gate = GateProcess(load_suite(args.suite), [{"type": "expect_table_row_count_to_equal",
                                                 "kwargs": {"value": cmetrics["raw"]}}])
    schema = RecordSchema.from_file(args.schema)
    pub = Publication(name, cmetrics["accepted"], load_decisions(Path(args.dedup)), schema,
                      parquet_schema(schema.schema, args.schema))
    with Staging() as staging:
        out, lin = staging.directory(out_dir), staging.directory(lineage_dir)
        with open_read(args.accepted) as records_in, open_read(args.accepted_lineage) as lineage_in, \
                staging.create(out / RECORDS_FILE) as records_handle, \
                staging.create(lin / LINEAGE_FILE) as lineage_handle, \
                staging.create(out / PARQUET_FILE) as parquet_handle, pq.ParquetWriter(parquet_handle, pub.pschema) as parquet:
            records_out, lineage_hashed = HashingWriter(records_handle), HashingWriter(lineage_handle)
            lineage_out = LineageWriter(lineage_hashed)
            pub.run(records_in, lineage_in, read_jsonl(args.rejects), records_out, lineage_out, parquet,
                    where=args.accepted_lineage)
        index = lineage_out.index_table()
        gates = pub.check(index, gate, args.suite, args.dedup)
        with staging.create(lin / INDEX_FILE) as index_handle:
            lineage_out.write_index(index_handle, index)
        hashed = {out / RECORDS_FILE: records_out, lin / LINEAGE_FILE: lineage_hashed}   # hashed while written
        files = {f"{name}/{path.name}" if path.parent == out else lineage_path(name, path.name):
                 {"sha256": hashed[path].sha256(), "bytes": hashed[path].size} if path in hashed
                 else {"sha256": file_digest(path, "sha256"), "bytes": path.stat().st_size}
                 for path in sorted(out.iterdir()) + sorted(lin.iterdir())}
        with staging.open(args.summary) as handle:
            handle.write(dumps_pretty(pub.summary(cmetrics, files, gates)))
    return 0


if __name__ == "__main__":
    run(main)
