"""Stage `dedup`: exact and near duplicates across the whole release -> one decision file per category.

    python -m stages.dedup --params params.yaml --stages-dir data/stages \\
        --schema schemas/dedup.schema.json --suite expectations/dedup.json --out data/dedup \\
        --metrics data/dedup_metrics.json

Reads `categories` (the release order) and `neardup` from params, and each
category's `keys.parquet` (written by its category stage: id, exact key and
MinHash signatures; never the texts). Writes `<category>.jsonl` per category:
one line per accepted record that is dropped (`duplicate_of:<id>`,
`near_duplicate_of:<id>` with the similarities) or kept with near duplicates
(`near_duplicates: [...]`), in file order; a category with none gets one blank
line (fileio.EMPTY_JSONL). A category whose decisions did not change gets the
same bytes, so DVC does not rerun its `publish` stage.
Gates: every decision passes schemas/dedup.schema.json, and the decisions
pass the Great Expectations suite (ids unique, similarities in [threshold, 1]).
"""

from __future__ import annotations

from pathlib import Path

from cqia.common.entry import arguments, run, sweep
from cqia.common.fileio import Staging, dumps_pretty
from cqia.common.layout import KEYS_FILE
from cqia.common.params import load_categories, load_yaml
from cqia.dedup.neardup import NearDupConfig
from cqia.dedup.stage import decide, finish, gx_expectations, read_keys
from cqia.gates.schema import RecordSchema


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.dedup", __doc__, ("--params", "--stages-dir", "--schema", "--suite", "--out",
                                               "--metrics"), argv)
    out_dir, stages_dir = Path(args.out), Path(args.stages_dir)
    sweep(out_dir, args.metrics)
    params = load_yaml(args.params)
    categories = load_categories(params, args.params)
    near = NearDupConfig.from_params(params.get("neardup"), args.params)
    from cqia.gates.gx import GateProcess, load_suite

    gate = GateProcess(load_suite(args.suite), gx_expectations(near))
    schema = RecordSchema.from_file(args.schema)
    release = read_keys(categories, [stages_dir / cat.name / KEYS_FILE for cat in categories], near)
    with Staging() as staging:
        out = staging.directory(out_dir)
        rows, counts = decide(release, near, schema, lambda name: staging.create(out / f"{name}.jsonl"))
        del release
        metrics = finish(gate, rows, counts, near, args.suite)
        with staging.open(args.metrics) as handle:
            handle.write(dumps_pretty(metrics))
    return 0


if __name__ == "__main__":
    run(main)
