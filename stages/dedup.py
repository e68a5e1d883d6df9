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

from cqia.dedup.keys import from_table, iter_decisions, stack
from cqia.common.entry import arguments, run, sweep
from cqia.common.errors import CqiaError, GateFailed
from cqia.common.fileio import EMPTY_JSONL, Staging, dumps_line, dumps_pretty
from cqia.dedup.neardup import NearDupConfig
from cqia.common.params import load_categories, load_yaml
from cqia.gates.schema import RecordSchema


GX_COLUMNS = ("id", "kind", "kept_id", "similarity", "output_similarity")


def gx_row(decision: dict) -> tuple:
    """The row the Great Expectations suite sees for one decision."""
    if "duplicate_of" in decision:
        return decision["id"], "duplicate", decision["duplicate_of"], None, None
    if "near_duplicate_of" in decision:
        return (decision["id"], "near_duplicate", decision["near_duplicate_of"], decision["similarity"],
                decision["output_similarity"])
    return decision["id"], "kept", None, None, None


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.dedup", __doc__, ("--params", "--stages-dir", "--schema", "--suite", "--out",
                                               "--metrics"), argv)
    out_dir, stages_dir = Path(args.out), Path(args.stages_dir)
    sweep(out_dir, args.metrics)
    params = load_yaml(args.params)
    categories = load_categories(params, args.params)
    near = NearDupConfig.from_params(params.get("neardup"), args.params)
    from cqia.gates.gx import GateProcess, failure_report, load_suite

    gate = GateProcess(load_suite(args.suite), [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": column, "min_value": near.threshold}}
        for column in ("similarity", "output_similarity")])
    schema = RecordSchema.from_file(args.schema)

    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [stages_dir / cat.name / "keys.parquet" for cat in categories]
    for cat, path in zip(categories, paths):
        if not path.is_file():
            raise CqiaError(f"no keys for category '{cat.name}'", where=str(path),
                            fix=f"Run `dvc repro category@{cat.name}` first")

    def parts():
        """Each category's keys in turn (one category's table in memory at a time)."""
        for cat, path in zip(categories, paths):
            keys = from_table(cat.name, pq.read_table(path))
            if near.enabled and keys.whole is None:
                raise CqiaError("the keys have no MinHash signatures, but neardup.enabled is true", where=str(path),
                                fix=f"Run `dvc repro category@{cat.name}` (it reads neardup.enabled)")
            if near.enabled and keys.whole.shape[1] != near.num_perm:
                raise CqiaError(f"the signatures have {keys.whole.shape[1]} permutations, params say "
                                f"neardup.num_perm {near.num_perm}", where=str(path),
                                fix=f"Run `dvc repro category@{cat.name}`")
            yield keys

    release = stack(parts(), sum(pq.read_metadata(path).num_rows for path in paths),
                    near.num_perm if near.enabled else None)
    pa.default_memory_pool().release_unused()       # the tables' buffers, cached by Arrow's allocator
    rows, counts = [], {}
    with Staging() as staging:
        tmp = staging.directory(out_dir)
        # a category's decisions are written as they are made: never the whole release's at once
        for (name, decisions), lo, hi in zip(iter_decisions(release, near if near.enabled else None),
                                             release.offsets[:-1].tolist(), release.offsets[1:].tolist()):
            with staging.create(tmp / f"{name}.jsonl") as out:
                for decision in decisions:
                    if not schema.is_valid(decision):
                        raise GateFailed(f"decision for {decision.get('id')} fails the schema "
                                         f"({schema.explain(decision)})", where=f"category {name}")
                    rows.append(gx_row(decision))
                    out.write(dumps_line(decision))
                if not decisions:
                    out.write(EMPTY_JSONL)
            counts[name] = {"accepted": hi - lo,
                            "duplicates": sum("duplicate_of" in d for d in decisions),
                            "near_duplicates": sum("near_duplicate_of" in d for d in decisions),
                            "clusters": sum("near_duplicates" in d for d in decisions)}
        del release
        gate.validate_rows(GX_COLUMNS, rows)
        del rows
        result = gate.result()
        if not result["success"]:
            raise GateFailed(failure_report(result, f"dedup ({args.suite})"))
        metrics = {"neardup": near.as_dict(), "categories": counts,
                   **{k: sum(c[k] for c in counts.values())
                      for k in ("accepted", "duplicates", "near_duplicates", "clusters")},
                   "gates": {"schema": {"decisions": sum(c["duplicates"] + c["near_duplicates"] + c["clusters"]
                                                         for c in counts.values()), "success": True},
                             "great_expectations": result}}
        with staging.open(args.metrics) as out:
            out.write(dumps_pretty(metrics))
    return 0


if __name__ == "__main__":
    run(main)
