"""Lineage as a lookup: the release's lineage.jsonl plus a sorted index.

merge writes `lineage.jsonl` (one line per raw record, released or rejected)
through `LineageWriter`, which also records where each line and each released
record sits. At the end it writes `index.parquet`, sorted by id, with per id:
category, status, reason, the byte span of its lineage line, the byte span of
its record in full.jsonl and a hash of that record. Parquet's row-group
statistics let a reader fetch one id by reading one row group; a diff of two
releases reads two indexes and touches records only where they differ.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

from cqia.fileio import dumps_line

INDEX_FILE = "index.parquet"
LINEAGE_FILE = "lineage.jsonl"
FULL_FILE = "full.jsonl"
ROW_GROUP = 65_536


def record_hash(line: bytes) -> bytes:
    """8-byte hash of a released record's JSON line (its bytes are canonical: merge writes them)."""
    return hashlib.blake2b(line, digest_size=8).digest()


class LineageWriter:
    """Writes lineage lines and remembers, per id, where things are."""

    def __init__(self, handle: BinaryIO):
        self._out = handle
        self._offset = 0
        self.ids: list[str] = []
        self.categories: list[str] = []
        self.statuses: list[str] = []
        self.reasons: list[str | None] = []
        self.spans: list[tuple[int, int]] = []
        self.records: list[tuple[int, int, bytes] | None] = []

    def write(self, lineage: dict[str, Any], record: tuple[int, bytes] | None = None) -> None:
        """Write one lineage line; `record` is (offset in full.jsonl, record line) for a released record."""
        line = dumps_line(lineage)
        self._out.write(line)
        self.ids.append(lineage["id"])
        self.categories.append(lineage["category"])
        self.statuses.append(lineage["status"])
        self.reasons.append(lineage.get("reason"))
        self.spans.append((self._offset, len(line)))
        self._offset += len(line)
        self.records.append((record[0], len(record[1]), record_hash(record[1])) if record else None)

    def index_table(self):
        import pyarrow as pa

        recs = self.records
        table = pa.table({
            "id": pa.array(self.ids, pa.string()),
            "category": pa.array(self.categories, pa.string()).dictionary_encode(),
            "status": pa.array(self.statuses, pa.string()).dictionary_encode(),
            "reason": pa.array(self.reasons, pa.string()),
            "lineage_offset": pa.array([s[0] for s in self.spans], pa.int64()),
            "lineage_length": pa.array([s[1] for s in self.spans], pa.int32()),
            "record_offset": pa.array([r[0] if r else None for r in recs], pa.int64()),
            "record_length": pa.array([r[1] if r else None for r in recs], pa.int32()),
            "record_hash": pa.array([r[2] if r else None for r in recs], pa.binary(8)),
        })
        return table.sort_by("id")

    def write_index(self, path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(self.index_table(), path, row_group_size=ROW_GROUP, compression="zstd",
                       write_statistics=True)
