"""Stage `category@<name>`: one source category's raw files -> gated records.

    python -m stages.category --category 100poison --params params.yaml \\
        --raw-dir data/raw/100poison --reviews data/reviews/100poison.jsonl \\
        --schema schemas/record.schema.json --suite expectations/default.json \\
        --accepted data/stages/100poison/accepted.jsonl.zst \\
        --lineage data/stages/100poison/lineage.jsonl.zst \\
        --rejects data/stages/100poison/rejects.jsonl \\
        --keys data/stages/100poison/keys.parquet \\
        --metrics data/stages/100poison/metrics.json

Reads `categories.<name>`, `gates` and the sketch keys of `neardup` from
params. Writes the accepted records (`--accepted`, one JSON line each, the
bytes the release will hold), their lineage (`--lineage`, line for line; both zstd-compressed when their
names end in `.zst`, as dvc.yaml names them: cqia/common/fileio.py), the
rejects with reason codes and their lineage, the keys the dedup stage compares
(cqia/dedup/keys.py: id, exact key, MinHash signatures) and metrics; all five
appear together, and only if every gate passed.

Where the records are judged is an environment setting, never a param: the
bytes are the same either way (cqia/ingest/executor.py). CQIA_EXECUTOR=local
(default) uses forked workers on this machine (CQIA_WORKERS of them);
CQIA_EXECUTOR=ray sends the chunks to a Ray cluster (docs/ray.md).
"""

from __future__ import annotations

from pathlib import Path

from cqia.common.entry import arguments, run, sweep
from cqia.common.fileio import Staging, dumps_pretty
from cqia.common.params import load_yaml
from cqia.dedup.neardup import NearDupConfig
from cqia.gates.schema import RecordSchema
from cqia.ingest.config import load_checked_category
from cqia.ingest.decisions import read_decisions
from cqia.ingest.executor import open_workers
from cqia.ingest.formats import FORMATS
from cqia.ingest.raw import raw_files
from cqia.ingest.stage import CategoryRun, Sinks
from cqia.ingest.written import JudgeSpec


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.category", __doc__, ("--category", "--params", "--raw-dir", "--reviews", "--schema",
                                                  "--suite", "--accepted", "--lineage", "--rejects", "--keys",
                                                  "--metrics"), argv)
    sweep(args.accepted, args.lineage, args.rejects, args.keys, args.metrics)
    from cqia.gates.gx import GateProcess, load_suite

    suite = load_suite(args.suite)
    gate = GateProcess(suite)  # first: GX's import overlaps everything below
    params = load_yaml(args.params)
    category = load_checked_category(params, args.category, args.params)
    spec = JudgeSpec(category, RecordSchema.from_file(args.schema).schema, read_decisions(Path(args.reviews)),
                     NearDupConfig.from_params(params.get("neardup"), args.params), suite.get("name", ""))
    stage = CategoryRun(spec, gate, chunk_rows=int((params.get("gates") or {}).get("chunk_rows", 200_000)))
    raw = raw_files(category.name, category.raw, Path(args.raw_dir), FORMATS[category.format])
    with Staging() as staging, staging.open(args.accepted) as accepted, staging.open(args.lineage) as lineage, \
            staging.open(args.rejects) as rejects, open_workers(spec) as workers:
        stage.judge(raw, workers, Sinks(accepted, lineage, rejects))
        metrics = stage.finish(workers.processor.unused_decisions, args.reviews, args.suite)
        with staging.open(args.keys) as out:
            stage.write_keys(out)
        with staging.open(args.metrics) as out:
            out.write(dumps_pretty(metrics))
    return 0


if __name__ == "__main__":
    run(main)
