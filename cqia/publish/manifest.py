"""The merge stage's work: every category's publish summary -> the release's manifest, dataset
card and metrics, after the release gate over every released id.

The entry (stages/merge.py) names the files; this module reads the summaries and lineage
indexes it is pointed at and returns bytes and dicts; it writes nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import orjson

from cqia.common.errors import CqiaError, GateFailed
from cqia.common.lineage import INDEX_FILE
from cqia.common.params import Category
from cqia.common.pii_kinds import LABELS as PII_LABELS
from cqia.common.pii_kinds import MASKS as PII_MASKS
from cqia.common.pii_kinds import PII_FIELDS
from cqia.dedup.neardup import NearDupConfig
from cqia.gates.accounting import check_accounting
from cqia.gates.schema import RecordSchema
from cqia.publish.card import PiiLegend, dataset_card

CARD = "README.md"                                  # the dataset card, in the release directory


def release_settings(params: dict[str, Any], where: str) -> dict[str, Any]:
    """params' `release` block, checked: a version, and no release-wide licence."""
    release = params.get("release") or {}
    version = release.get("version")
    if not isinstance(version, str) or not version:
        raise CqiaError("release.version is missing", where=where, fix="Set it, e.g. 'v0.1'")
    if "license" in release:
        raise CqiaError("release.license: the licence is per source category", where=where,
                        fix="Remove it and set categories.<name>.license (and license_terms for `other`)")
    return dict(release)


def read_summaries(categories: Sequence[Category], publish_dir: Path) -> list[dict[str, Any]]:
    """Each category's publish summary, in release order."""
    parts = []
    for cat in categories:
        path = publish_dir / f"{cat.name}.json"
        if not path.is_file():
            raise CqiaError(f"category '{cat.name}' is not published", where=str(path),
                            fix=f"Run `dvc repro publish@{cat.name}` first")
        parts.append(orjson.loads(path.read_bytes()))
    return parts


def gate_expectations(categories: Sequence[Category], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the release suite adds at run time: every category present, the row count the summaries add up to."""
    return [{"type": "expect_column_distinct_values_to_equal_set",
             "kwargs": {"column": "category", "value_set": [c.name for c in categories]}},
            {"type": "expect_table_row_count_to_equal", "kwargs": {"value": sum(p["released"] for p in parts)}}]


class Assembly:
    """The release put together from its categories' summaries."""

    def __init__(self, release: dict[str, Any], neardup: NearDupConfig, schema: RecordSchema) -> None:
        self.release, self.neardup, self.schema = release, neardup, schema
        self.summary: list[dict[str, Any]] = []
        self.files: dict[str, Any] = {}
        self.raw_inputs: dict[str, str] = {}
        self.example = None
        self.clusters = self.near_duplicates = 0

    @property
    def version(self) -> str:
        return self.release["version"]

    @property
    def released(self) -> int:
        return sum(c["released"] for c in self.summary)

    def add(self, cat: Category, part: dict[str, Any], lineage_dir: Path):
        """Add one category; return its released ids (an Arrow table: id, category) for the release gate,
        after checking that its summary and its lineage index agree (accounting)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        index = pq.read_table(lineage_dir / cat.name / INDEX_FILE, columns=["id", "status"])
        ids = index.filter(pc.equal(index.column("status"), "released")).column("id")
        if len(ids) != part["released"]:
            raise GateFailed(f"accounting gate failed: the summary says {part['released']} released, the lineage "
                             f"index has {len(ids)}", where=f"category {cat.name}",
                             fix=f"Run `dvc repro publish@{cat.name}`")
        check_accounting("raw", part["raw"], {"released": part["released"], "rejected": part["rejected"]},
                         where=f"category {cat.name}", fix=f"Run `dvc repro publish@{cat.name}`")
        self.files.update(part["files"])
        self.raw_inputs.update(part["raw_inputs"])
        self.example = self.example or part["example"]
        self.clusters += part["near_duplicate_clusters"]
        self.near_duplicates += part["rejected_by_reason"].get("near_duplicate_of", 0)
        self.summary.append({**{k: part[k] for k in ("raw", "released", "rejected", "rejected_by_reason", "num_bytes")},
                             "name": cat.name, "source": cat.source, "source_dataset": cat.source_dataset,
                             "construction": cat.construction, "license": cat.license,
                             "license_terms": cat.license_terms, "copyright": cat.defaults.get("copyright", ""),
                             "pii": cat.rules.get("pii") or {},
                             "parquet_bytes": part["files"][f"{cat.name}/train.parquet"]["bytes"]})
        return pa.table({"id": ids, "category": pa.array([cat.name] * len(ids), pa.string())})

    def outputs(self, gx_result: dict[str, Any]) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
        """The dataset card's bytes, the manifest and the stage's metrics."""
        neardup_stats = {**self.neardup.as_dict(), "clusters": self.clusters, "near_duplicates": self.near_duplicates}
        card = dataset_card(self.release, self.summary, self.example, self.schema.schema,
                            PiiLegend(PII_FIELDS, PII_LABELS, PII_MASKS), neardup_stats).encode("utf-8")
        files = dict(self.files, **{CARD: {"sha256": hashlib.sha256(card).hexdigest(), "bytes": len(card)}})
        categories = {c["name"]: {k: c[k] for k in ("raw", "released", "rejected", "rejected_by_reason")}
                      for c in self.summary}
        manifest = {
            "name": self.release.get("name", "COIG-CQIA"),
            "version": self.version,
            "schema_version": self.schema.version,
            "released": self.released,
            "categories": categories,
            "raw_inputs": dict(sorted(self.raw_inputs.items())),
            "neardup": neardup_stats,
            "files": dict(sorted(files.items())),
        }
        metrics = {"version": self.version, "released": self.released, "categories": categories,
                   "neardup": neardup_stats,
                   "gates": {"great_expectations": gx_result, "accounting": {"success": True}}}
        return card, manifest, metrics
