"""The category stage's work, over open inputs and outputs: raw items judged into accepted
records, rejects and dedup keys, then the stage's gates and its metrics.

The entry (stages/category.py) opens the files and the workers; this module
never sees params.yaml or an output path. Outcomes come from the workers in
raw-file order (cqia/ingest/parallel.py), so the bytes written do not depend on
how many workers judged them, nor where (cqia/ingest/executor.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

from cqia.common.errors import CqiaError, GateFailed
from cqia.common.progress import jsonl_records, progress
from cqia.gates.accounting import check_accounting
from cqia.ingest.judge import Source
from cqia.ingest.raw import RawItems
from cqia.ingest.written import GX_COLUMNS, JudgeSpec


@dataclass
class Sinks:
    """Where the stage's outcomes go, each line as the workers wrote it."""

    accepted: BinaryIO          # the released records' bytes
    lineage: BinaryIO           # the accepted records' lineage, line for line
    rejects: BinaryIO           # each reject's lineage, with its reason code


@dataclass
class CategoryRun:
    """One run of a category's stage: counts as the outcomes are written, the GX gate fed in chunks."""

    spec: JudgeSpec
    gate: Any                   # cqia.gates.gx.GateProcess (or anything with validate_rows/result/rows)
    chunk_rows: int = 200_000
    accepted: int = 0
    rejected: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = self.spec.keys()
        self._rows: list[tuple] = []

    @property
    def name(self) -> str:
        return self.spec.category.name

    def judge(self, raw: Iterable[tuple[Source, RawItems]], workers, sinks: Sinks) -> None:
        """Judge every raw record of every file and write its outcome."""
        for source, items in raw:
            file = source.file.rsplit("/", 1)[-1]
            kept = progress(workers.outcomes(source, items), f"{self.name} {file}",
                            total=lambda path=source.file: jsonl_records(path))
            for is_accepted, reason, line, row, key_row in kept:
                if is_accepted:
                    self.accepted += 1
                    sinks.accepted.write(line[0])
                    sinks.lineage.write(line[1])
                    self._rows.append(row)
                    self.keys.add_row(row[0], key_row)
                    if len(self._rows) >= self.chunk_rows:
                        self.gate.validate_rows(GX_COLUMNS, self._rows)
                        self._rows = []
                else:
                    self.rejected += 1
                    self.by_reason[reason] += 1
                    sinks.rejects.write(line)
            self.files[source.file] = {"md5": source.md5, "records": items.records}

    def finish(self, unused_decisions: Iterable[str], reviews: str, suite: str) -> dict[str, Any]:
        """The stage's gates (every review decision used, accounting, Great Expectations); its metrics."""
        from cqia.gates.gx import failure_report

        decisions = self.spec.decisions
        unknown = sorted(unused_decisions, key=lambda i: decisions[i].line)
        if unknown:
            first = decisions[unknown[0]]
            raise CqiaError(f"review decision for id '{first.id}', which is not a record of category "
                            f"'{self.name}' ({len(unknown)} such decision(s))", where=f"{reviews}:{first.line}",
                            fix="Fix the id (see `cqia review export`) or remove the line")
        raw_total = sum(f["records"] for f in self.files.values())
        accounting = check_accounting("raw", raw_total, {"accepted": self.accepted, "rejected": self.rejected},
                                      where=f"category {self.name}")
        if self._rows or not self.gate.rows:
            self.gate.validate_rows(GX_COLUMNS, self._rows)
            self._rows = []
        gx_result = self.gate.result()
        if not gx_result["success"]:
            raise GateFailed(failure_report(gx_result, f"category {self.name} ({suite})"))
        return {
            "category": self.name,
            "format": self.spec.category.format,
            "raw": raw_total,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.by_reason.items())),
            "files": self.files,
            "gates": {
                "schema": {"rejected": self.by_reason.get("schema_invalid", 0)},
                "accounting": accounting,
                "great_expectations": gx_result,
            },
        }

    def write_keys(self, out: BinaryIO) -> None:
        """The keys the dedup stage compares (cqia/dedup/keys.py), as zstd Parquet."""
        import pyarrow.parquet as pq

        from cqia.dedup.keys import to_table

        pq.write_table(to_table(self.keys.build()), out, compression="zstd")
