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
from typing import Any, Iterable, Iterator

import numpy as np

from cqia.dedup.neardup import Matches, NearDupConfig, match_arrays, record_texts, signature_pairs

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


@dataclass
class Stacked:
    """Every category's keys, in release order, in one array per column (what `decide` reads)."""

    categories: list[str]
    offsets: np.ndarray                 # int64, len(categories) + 1: category c is rows offsets[c]:offsets[c+1]
    ids: np.ndarray                     # bytes (ids are ASCII): 1M take ~30 MB, not the ~70 MB of a list of str
    keys: np.ndarray                    # uint8, shape (n, KEY_BYTES)
    whole: np.ndarray | None = None
    output: np.ndarray | None = None

    def id(self, i: int) -> str:
        return self.ids[i].decode("ascii")


def stack(parts: Iterable[Keys], rows: int, num_perm: int | None) -> Stacked:
    """Copy each category's keys (and with `num_perm`, its signatures) into arrays of `rows` rows.

    `parts` may be a generator: only one category's table is alive at a time,
    so the peak is the stacked arrays plus one category, not twice the release.
    """
    keys = np.empty((rows, KEY_BYTES), np.uint8)
    whole = np.empty((rows, num_perm), np.uint8) if num_perm else None
    output = np.empty((rows, num_perm), np.uint8) if num_perm else None
    categories, offsets, ids = [], [0], [np.zeros(0, "S1")]
    for part in parts:
        lo, hi = offsets[-1], offsets[-1] + len(part.ids)
        if hi > rows:
            raise ValueError(f"stack: more than {rows} rows")
        keys[lo:hi] = part.keys
        if num_perm:
            whole[lo:hi] = part.whole
            output[lo:hi] = part.output
        categories.append(part.category)
        offsets.append(hi)
        ids.append(np.array(part.ids, dtype="S"))
    if offsets[-1] != rows:
        raise ValueError(f"stack: {offsets[-1]} rows, expected {rows}")
    return Stacked(categories, np.array(offsets, np.int64), np.concatenate(ids), keys, whole, output)


def iter_decisions(release: Stacked, near: NearDupConfig | None) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(category, its decisions in file order), in release order: a decision for each accepted record
    that is dropped or kept with near duplicates. Records with no decision are kept and have no near
    duplicates. A category's decisions are made into dicts only when it is its turn."""
    rid, n = release.id, len(release.ids)
    first = exact_duplicates(release.keys)
    exact = first != np.arange(n)
    if near is not None and near.enabled and n > 1:
        matches = match_arrays(release.whole, release.output, near, exclude=exact)
    else:
        empty = np.zeros(0, np.int64)
        matches = Matches(empty, empty, np.zeros(0), np.zeros(0))
    # kept record -> its near duplicates (in index order): CSR over the kept records, sorted
    by_kept = np.argsort(matches.kept, kind="stable")
    kept_index, kept_start = np.unique(matches.kept[by_kept], return_index=True)
    kept_end = np.append(kept_start[1:], len(by_kept))
    dropped_index = matches.index[by_kept]
    exact_index = np.nonzero(exact)[0]
    for c, category in enumerate(release.categories):
        lo, hi = release.offsets[c], release.offsets[c + 1]
        rows: dict[int, dict[str, Any]] = {}
        for i in exact_index[np.searchsorted(exact_index, lo):np.searchsorted(exact_index, hi)].tolist():
            kept = rid(first[i])
            rows[i] = {"id": rid(i), "reason": f"duplicate_of:{kept}", "duplicate_of": kept}
        a, b = np.searchsorted(matches.index, lo), np.searchsorted(matches.index, hi)
        for i, j, sim, out_sim in zip(matches.index[a:b].tolist(), matches.kept[a:b].tolist(),
                                      matches.similarity[a:b].tolist(), matches.output_similarity[a:b].tolist()):
            kept = rid(j)
            rows[i] = {"id": rid(i), "reason": f"near_duplicate_of:{kept}", "near_duplicate_of": kept,
                       "similarity": sim, "output_similarity": out_sim, "threshold": near.threshold,
                       "ngram": near.ngram}
        a, b = np.searchsorted(kept_index, lo), np.searchsorted(kept_index, hi)
        for i, start, end in zip(kept_index[a:b].tolist(), kept_start[a:b].tolist(), kept_end[a:b].tolist()):
            rows[i] = {"id": rid(i), "near_duplicates": [rid(j) for j in dropped_index[start:end].tolist()]}
        yield category, [rows[i] for i in sorted(rows)]


def decide(parts: list[Keys], near: NearDupConfig | None) -> dict[str, list[dict[str, Any]]]:
    """Per category, in file order: a decision for each accepted record that is dropped or kept
    with near duplicates (`iter_decisions` over the stacked parts)."""
    with_signatures = near is not None and near.enabled
    release = stack(parts, sum(len(p.ids) for p in parts), parts[0].whole.shape[1] if with_signatures and parts
                    else None)
    return dict(iter_decisions(release, near))


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
        whole, output = signature_pairs([record_texts(record) for record in records], self.near)
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
