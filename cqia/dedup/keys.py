"""Deduplication across the release: which accepted records are dropped, and why.

Pure: arrays in, decisions out; stages/dedup.py does the I/O. The category
stages leave one row per accepted record (`keys.parquet`: the id, the exact
duplicate key of the normalised texts and, with near-duplicate detection on,
the MinHash signatures), so this step never reads a record's text.

Release order is categories in params order, then file order. An exact
duplicate (same instruction, input and output after normalisation) of an
earlier record is dropped as `duplicate_of:<id>` of the FIRST record with its
key. A near duplicate (cqia/dedup/neardup.py) of an earlier kept record is dropped
as `near_duplicate_of:<id>`. Kept records that have near duplicates list them,
so the lineage says which record was kept and why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from cqia.dedup.neardup import Match, NearDupConfig, clusters, find_matches, record_texts, signatures

KEY_BYTES = 16


def dedup_key(record: dict[str, Any]) -> bytes:
    """Exact duplicate key over the normalised (instruction, input, output)."""
    body = "\x00".join((record["instruction"], record["input"], record["output"])).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(body, digest_size=KEY_BYTES).digest()


@dataclass
class Keys:
    """One category's accepted records, in file order: ids, exact keys (n x 16 bytes) and signatures."""

    category: str
    ids: list[str]
    keys: np.ndarray                    # uint8, shape (n, KEY_BYTES)
    whole: np.ndarray | None = None     # uint8, shape (n, num_perm): MinHash of instruction+input+output
    output: np.ndarray | None = None    # uint8, shape (n, num_perm): MinHash of output


def exact_duplicates(keys: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row with the same key (itself if it is the first)."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    flat = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    return first[inverse.ravel()].astype(np.int64)


def decide(parts: list[Keys], near: NearDupConfig | None) -> dict[str, list[dict[str, Any]]]:
    """Per category, in file order: a decision for each accepted record that is dropped or kept
    with near duplicates. Records with no decision are kept and have no near duplicates."""
    ids = [i for part in parts for i in part.ids]
    offsets = np.cumsum([0] + [len(part.ids) for part in parts])
    first = exact_duplicates(np.concatenate([p.keys for p in parts]) if parts else np.zeros((0, KEY_BYTES), np.uint8))
    position = np.arange(len(ids))
    exact = position[first != position]
    matches: dict[int, Match] = {}
    if near is not None and near.enabled and len(ids) > 1:
        whole = np.concatenate([p.whole for p in parts])
        output = np.concatenate([p.output for p in parts])
        matches = find_matches(whole, output, near, exclude=set(exact.tolist()))
        del whole, output
    kept = clusters(matches)
    rows: dict[int, dict[str, Any]] = {}
    for i in exact.tolist():
        rows[i] = {"id": ids[i], "reason": f"duplicate_of:{ids[first[i]]}", "duplicate_of": ids[first[i]]}
    for i, match in matches.items():
        rows[i] = {"id": ids[i], "reason": f"near_duplicate_of:{ids[match.kept]}",
                   "near_duplicate_of": ids[match.kept], "similarity": match.similarity,
                   "output_similarity": match.output_similarity, "threshold": near.threshold, "ngram": near.ngram}
    for i, dropped in kept.items():
        rows[i] = {"id": ids[i], "near_duplicates": [ids[j] for j in dropped]}
    out: dict[str, list[dict[str, Any]]] = {part.category: [] for part in parts}
    for i in sorted(rows):
        cat = int(np.searchsorted(offsets, i, side="right")) - 1
        out[parts[cat].category].append(rows[i])
    return out


class KeysBuilder:
    """Collects a category's `Keys` record by record (the category stage's side of the keys file).

    A record's row (its exact key, then with near-duplicate detection on its
    two signatures) is made by `rows` wherever the record is, a batch at a
    time (MinHash is much cheaper per record in batches of a few hundred than
    one by one), and kept in order by `add_row`; the stage's worker processes
    (cqia/ingest/parallel.py) make the rows and the main process adds them.
    """

    def __init__(self, category: str, near: NearDupConfig | None):
        self.category = category
        self.near = near if near is not None and near.enabled else None
        self.width = KEY_BYTES + (2 * self.near.num_perm if self.near is not None else 0)
        self.ids: list[str] = []
        self._rows = bytearray()

    def rows(self, records: list[dict[str, Any]]) -> list[bytes]:
        """Each record's row: its `dedup_key`, then (near-duplicate detection on) its MinHash signatures."""
        keys = [dedup_key(record) for record in records]
        if self.near is None or not records:
            return keys
        texts = [record_texts(record) for record in records]
        whole = signatures([w for w, _ in texts], self.near)
        output = signatures([o for _, o in texts], self.near)
        return [key + w.tobytes() + o.tobytes() for key, w, o in zip(keys, whole, output)]

    def add_row(self, rid: str, row: bytes) -> None:
        self.ids.append(rid)
        self._rows += row

    def add(self, record: dict[str, Any]) -> None:
        self.add_row(record["id"], self.rows([record])[0])

    def build(self) -> Keys:
        rows = np.frombuffer(self._rows, dtype=np.uint8).reshape(-1, self.width)
        keys = rows[:, :KEY_BYTES]
        if self.near is None:
            return Keys(self.category, self.ids, keys)
        sig = KEY_BYTES + self.near.num_perm
        return Keys(self.category, self.ids, keys, rows[:, KEY_BYTES:sig], rows[:, sig:])


def to_table(keys: Keys):
    """The keys file's Arrow table: id, key and (near-duplicate detection on) whole, output."""
    import pyarrow as pa

    def column(matrix: np.ndarray):
        width = matrix.shape[1]
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), matrix.shape[0],
                                                    [None, pa.py_buffer(np.ascontiguousarray(matrix).tobytes())])

    columns = {"id": pa.array(keys.ids, pa.string()), "key": column(keys.keys)}
    if keys.whole is not None:
        columns["whole"] = column(keys.whole)
        columns["output"] = column(keys.output)
    return pa.table(columns)


def from_table(category: str, table) -> Keys:
    """The inverse of `to_table`."""

    def matrix(name: str) -> np.ndarray | None:
        if name not in table.column_names:
            return None
        array = table.column(name).combine_chunks()
        width = array.type.byte_width
        data = np.frombuffer(array.buffers()[1], dtype=np.uint8)[array.offset * width:(array.offset + len(array)) * width]
        return data.reshape(len(array), width)

    return Keys(category, table.column("id").to_pylist(), matrix("key"), matrix("whole"), matrix("output"))
