"""Near-duplicate detection: MinHash LSH over character n-grams.

Pure: texts in, matches out; never sees a path or params.yaml.

What is compared. Each record gives two texts: the whole record
(``instruction + "\\n" + input + "\\n" + output``) and its ``output`` alone.
Two records are near duplicates when the estimated Jaccard similarity of
their character n-gram sets is at least ``threshold`` for the whole record
AND for the output. The second condition keeps a prompt that upstream
repeats with different answers (100PoisonMpts does this) from collapsing
into one record: the prompts match, the answers do not.

Which record is kept. Records are taken in release order (categories in
params order, then file order); a record is dropped as a near duplicate of
the FIRST earlier record it matches that is itself kept, as exact
deduplication does. Nothing depends on hash seeds or set order: the n-gram
hashes are a fixed polynomial over code points, MinHash uses the seed from
params, and candidates are visited in index order.

How. Text is lower-cased and split into character n-grams (``ngram``,
default 5; every n-gram of the text, with the tail padded so that texts
shorter than n still have one). The n-grams of a chunk of records are hashed
with numpy and sketched by rensa's Rust MinHash; only the low byte of each of
the ``num_perm`` minima is kept (b-bit MinHash: one byte per permutation, so
1M records take 2 x 128 MB), and the estimate is corrected for the 1/256
chance that two low bytes agree by accident. LSH: the signature is cut into
``bands`` bands; records that agree on a whole band are candidates, and each
record is checked against at most ``max_candidates`` earliest records of
each bucket it falls in, so a bucket of many near-identical records costs
linear, not quadratic, time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable

import numpy as np

from cqia.common.errors import CqiaError

CHUNK = 10_000
_M = np.uint64(0x100000001B3)          # multiplier of the n-gram polynomial (odd)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finaliser
_MIX2 = np.uint64(0x94D049BB133111EB)
_CHANCE = 1.0 / 256.0                  # two unrelated low bytes agree with this probability


@dataclass(frozen=True)
class NearDupConfig:
    """The `neardup:` block of params.yaml."""

    enabled: bool = True
    threshold: float = 0.8
    ngram: int = 5
    num_perm: int = 128
    bands: int = 16
    seed: int = 1
    max_candidates: int = 16

    @classmethod
    def from_params(cls, block: Any, where: str = "params.yaml") -> "NearDupConfig":
        if block is None:
            return cls()
        key = f"{where}: neardup"
        if not isinstance(block, dict):
            raise CqiaError("must be a mapping", where=key)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(block) - set(known))
        if unknown:
            raise CqiaError(f"unknown key(s) {unknown}", where=key, fix=f"Available keys: {known}")
        values = {**{f.name: f.default for f in fields(cls)}, **block}
        if not isinstance(values["enabled"], bool):
            raise CqiaError(f"enabled is {values['enabled']!r}", where=key, fix="Use true or false")
        threshold = values["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise CqiaError(f"threshold is {threshold!r}", where=key,
                            fix="Use a Jaccard similarity in (0, 1], e.g. 0.8")
        for name, low in (("ngram", 1), ("num_perm", 8), ("bands", 1), ("seed", 0), ("max_candidates", 1)):
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise CqiaError(f"{name} is {value!r}", where=key, fix=f"Use an integer >= {low}")
        if values["num_perm"] % values["bands"]:
            raise CqiaError(f"num_perm {values['num_perm']} is not a multiple of bands {values['bands']}",
                            where=key, fix="Choose bands that divide num_perm, e.g. num_perm 128 and bands 16")
        return cls(**{**values, "threshold": float(threshold)})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Match:
    """Record `index` is a near duplicate of the kept record `kept` (both release-order indices)."""

    index: int
    kept: int
    similarity: float         # estimated Jaccard of the whole record
    output_similarity: float  # estimated Jaccard of the output


def record_texts(record: dict[str, Any]) -> tuple[str, str]:
    """What is shingled: the whole record, and its output."""
    return f"{record['instruction']}\n{record['input']}\n{record['output']}", record["output"]


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place (one scratch buffer: fresh temporaries cost page faults)."""
    tmp = np.empty_like(h)
    for shift, mult in ((30, _MIX1), (27, _MIX2), (31, None)):
        np.right_shift(h, np.uint64(shift), out=tmp)
        np.bitwise_xor(h, tmp, out=h)
        if mult is not None:
            np.multiply(h, mult, out=h)
    return h


def ngram_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram hashes of each text, flat, with row offsets (len(texts) + 1).

    Text i contributes max(len(text), 1) n-grams: one starting at each
    character, the last ones padded with U+0000 (so a text shorter than n
    still has one n-gram, and no n-gram spans two texts).
    """
    pad = "\x00" * (n - 1)
    lowered = [t.lower() or "\x00" for t in texts]
    lens = np.fromiter(map(len, lowered), dtype=np.int64, count=len(lowered))
    joined = pad.join(lowered) + pad
    cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    count = len(cp) - n + 1
    h = cp[:count].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            h *= _M
            h += cp[k:k + count]
        h = _mix(h)
    offsets = np.zeros(len(lowered) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    if n > 1:
        # Drop the n-grams that start inside the padding after each text (but the last's, already cut).
        starts = offsets[1:-1] + np.arange(len(lowered) - 1, dtype=np.int64) * (n - 1)
        if len(starts):
            drop = (starts[:, None] + np.arange(n - 1, dtype=np.int64)).ravel()
            keep = np.ones(count, dtype=bool)
            keep[drop] = False
            h = h[keep]
    return h, offsets.astype(np.uint64)


def signatures(texts: list[str], config: NearDupConfig) -> np.ndarray:
    """b-bit MinHash signatures: one uint8 per permutation, shape (len(texts), num_perm)."""
    import rensa

    if not texts:
        return np.zeros((0, config.num_perm), dtype=np.uint8)
    hashes, offsets = ngram_hashes(texts, config.ngram)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, config.num_perm, config.seed)
    return (np.array(matrix.to_rows(), dtype=np.uint32) & 0xFF).astype(np.uint8)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of rows of b-bit signatures (corrected for chance agreement)."""
    agree = (a == b).mean(axis=-1)
    return np.clip((agree - _CHANCE) / (1.0 - _CHANCE), 0.0, 1.0)


class NearDupIndex:
    """Signatures of records added in release order; `matches()` decides the near duplicates.

    `add()` takes an optional exact-duplicate key (merge passes its own
    `dedup_key`): a record whose key an earlier record already had is an
    exact duplicate, which merge drops anyway, so it is never kept here and
    no record is matched to it.
    """

    def __init__(self, config: NearDupConfig):
        self.config = config
        self._whole: list[np.ndarray] = []
        self._output: list[np.ndarray] = []
        self._pending: list[tuple[str, str]] = []
        self._pending_keys: list[bytes] = []
        self._keys: list[np.ndarray] = []
        self.size = 0

    def add(self, whole: str, output: str, exact_key: bytes | None = None) -> int:
        """Add the next record's texts; returns its index.

        Pass `exact_key` (bytes of one fixed length) for every record or for none.
        """
        if exact_key is not None:
            self._pending_keys.append(exact_key)
        self._pending.append((whole, output))
        self.size += 1
        if len(self._pending) >= CHUNK:
            self._flush()
        return self.size - 1

    def add_records(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.add(*record_texts(record))

    def _flush(self) -> None:
        if self._pending:
            self._whole.append(signatures([w for w, _ in self._pending], self.config))
            self._output.append(signatures([o for _, o in self._pending], self.config))
            if self._pending_keys:
                if len(self._pending_keys) != len(self._pending):
                    raise ValueError("pass exact_key for every record or for none")
                self._keys.append(np.frombuffer(b"".join(self._pending_keys), dtype=np.uint8)
                                  .reshape(len(self._pending), -1))
            self._pending = []
            self._pending_keys = []

    def _exact_duplicates(self) -> set[int]:
        if not self._keys:
            return set()
        keys = np.concatenate(self._keys)
        self._keys = []
        if keys.shape[0] != self.size:
            raise ValueError("pass exact_key for every record or for none")
        flat = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
        _, first = np.unique(flat, return_index=True)
        repeated = np.ones(self.size, dtype=bool)
        repeated[first] = False
        return set(np.nonzero(repeated)[0].tolist())

    def matches(self) -> dict[int, Match]:
        """index -> Match for every record that is a near duplicate of an earlier kept record."""
        self._flush()
        exact = self._exact_duplicates()
        if self.size < 2:
            return {}
        # One array at a time, dropping its chunks at once: the peak is 1.5x the signatures, not 2x.
        self._whole = [np.concatenate(self._whole)] if len(self._whole) > 1 else self._whole
        self._output = [np.concatenate(self._output)] if len(self._output) > 1 else self._output
        return find_matches(self._whole[0], self._output[0], self.config, exclude=exact)


def _band_keys(band: np.ndarray) -> np.ndarray:
    key = np.zeros(band.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in range(band.shape[1]):
            key *= _M
            key += band[:, col].astype(np.uint64) + np.uint64(1)
    return key


def candidate_pairs(whole: np.ndarray, config: NearDupConfig) -> np.ndarray:
    """Unique (earlier, later) index pairs that share at least one LSH band, as int64 codes earlier*N+later."""
    n = whole.shape[0]
    rows = config.num_perm // config.bands
    found: list[np.ndarray] = []
    for b in range(config.bands):
        keys = _band_keys(whole[:, b * rows:(b + 1) * rows])
        order = np.argsort(keys, kind="stable")        # equal keys keep index order
        sorted_keys = keys[order]
        new_group = np.empty(n, dtype=bool)
        new_group[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new_group[1:])
        if new_group.all():
            continue
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
        rank = np.arange(n) - group_start
        for w in range(config.max_candidates):
            later = np.nonzero(rank > w)[0]
            if not len(later):
                break
            found.append(order[group_start[later] + w].astype(np.int64) * n + order[later])
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(found))


def find_matches(whole: np.ndarray, output: np.ndarray, config: NearDupConfig,
                 exclude: set[int] = frozenset(), chunk: int = 100_000) -> dict[int, Match]:
    """Greedy keep-first over verified LSH candidates (see the module docstring).

    Indices in `exclude` (exact duplicates, dropped elsewhere) are never kept and never matched.
    """
    n = whole.shape[0]
    codes = candidate_pairs(whole, config)
    earlier_parts, later_parts, sim_parts, out_parts = [], [], [], []
    for start in range(0, len(codes), chunk):
        part = codes[start:start + chunk]
        earlier, later = part // n, part % n
        sim = similarity(whole[earlier], whole[later])
        out_sim = similarity(output[earlier], output[later])
        ok = (sim >= config.threshold) & (out_sim >= config.threshold)
        earlier_parts.append(earlier[ok])
        later_parts.append(later[ok])
        sim_parts.append(sim[ok])
        out_parts.append(out_sim[ok])
    if not earlier_parts:
        return {}
    earlier = np.concatenate(earlier_parts)
    later = np.concatenate(later_parts)
    sims = np.concatenate(sim_parts)
    out_sims = np.concatenate(out_parts)
    order = np.lexsort((earlier, later))               # by later, then earlier: visit in index order
    dropped: dict[int, Match] = {}
    for i, j, s, o in zip(later[order].tolist(), earlier[order].tolist(),
                          sims[order].tolist(), out_sims[order].tolist()):
        if i in dropped or j in dropped or i in exclude or j in exclude:
            continue                                   # i already placed, or j is not kept
        dropped[i] = Match(i, j, round(s, 4), round(o, 4))
    return dropped


def clusters(matches: dict[int, Match]) -> dict[int, list[int]]:
    """kept index -> the indices dropped as its near duplicates, in index order."""
    out: dict[int, list[int]] = {}
    for index in sorted(matches):
        out.setdefault(matches[index].kept, []).append(index)
    return out

