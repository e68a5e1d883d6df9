"""The dedup stage's work: every category's keys -> one decision file per category, gated.

The entry (stages/dedup.py) names the files; this module reads the keys tables it is given
and writes each category's decisions to the handle `open_out(category)` returns, as they are
made (never the whole release's decisions at once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from cqia.common.errors import CqiaError, GateFailed
from cqia.common.fileio import EMPTY_JSONL, dumps_line
from cqia.common.params import Category
from cqia.dedup.keys import Keys, Stacked, from_table, iter_decisions, stack
from cqia.dedup.neardup import NearDupConfig
from cqia.gates.schema import RecordSchema

GX_COLUMNS = ("id", "kind", "kept_id", "similarity", "output_similarity")
COUNTS = ("accepted", "duplicates", "near_duplicates", "clusters")


def gx_row(decision: dict) -> tuple:
    """The row the Great Expectations suite sees for one decision."""
    if "duplicate_of" in decision:
        return decision["id"], "duplicate", decision["duplicate_of"], None, None
    if "near_duplicate_of" in decision:
        return (decision["id"], "near_duplicate", decision["near_duplicate_of"], decision["similarity"],
                decision["output_similarity"])
    return decision["id"], "kept", None, None, None


def gx_expectations(near: NearDupConfig) -> list[dict[str, Any]]:
    """What the suite adds at run time: similarities at or above the threshold params set."""
    return [{"type": "expect_column_values_to_be_between", "kwargs": {"column": column, "min_value": near.threshold}}
            for column in ("similarity", "output_similarity")]


def read_keys(categories: Sequence[Category], paths: Sequence[Path], near: NearDupConfig) -> Stacked:
    """The keys of the whole release, in release order (one category's table in memory at a time)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for cat, path in zip(categories, paths):
        if not path.is_file():
            raise CqiaError(f"no keys for category '{cat.name}'", where=str(path),
                            fix=f"Run `dvc repro category@{cat.name}` first")

    def parts() -> Iterator[Keys]:
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
    return release


def decide(release: Stacked, near: NearDupConfig, schema: RecordSchema,
           open_out: Callable[[str], BinaryIO]) -> tuple[list[tuple], dict[str, dict[str, int]]]:
    """Write each category's decisions (schema-gated); the rows for the GX gate, and counts per category.

    The caller drops `release` before the gate runs: at 1M records it is most of the stage's memory."""
    rows, counts = [], {}
    for (name, decisions), lo, hi in zip(iter_decisions(release, near if near.enabled else None),
                                         release.offsets[:-1].tolist(), release.offsets[1:].tolist()):
        with open_out(name) as out:
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
    return rows, counts


def finish(gate, rows: list[tuple], counts: dict[str, dict[str, int]], near: NearDupConfig,
           suite: str) -> dict[str, Any]:
    """The GX gate over every decision (GateFailed when it fails), then the stage's metrics."""
    from cqia.gates.gx import failure_report

    gate.validate_rows(GX_COLUMNS, rows)
    rows.clear()
    result = gate.result()
    if not result["success"]:
        raise GateFailed(failure_report(result, f"dedup ({suite})"))
    return {"neardup": near.as_dict(), "categories": counts,
            **{k: sum(c[k] for c in counts.values()) for k in COUNTS},
            "gates": {"schema": {"decisions": sum(c["duplicates"] + c["near_duplicates"] + c["clusters"]
                                                  for c in counts.values()), "success": True},
                      "great_expectations": result}}
