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
    return _lowered_hashes([t.lower() for t in texts], n)


def _lowered_hashes(lowered: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """`ngram_hashes` of texts lower-cased already."""
    pad = "\x00" * (n - 1)
    lowered = [t or "\x00" for t in lowered]
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
    if not texts:
        return np.zeros((0, config.num_perm), dtype=np.uint8)
    hashes, offsets = ngram_hashes(texts, config.ngram)
    return _minhash(hashes, offsets, config)


def _minhash(hashes: np.ndarray, offsets: np.ndarray, config: NearDupConfig) -> np.ndarray:
    import rensa

    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, config.num_perm, config.seed)
    return np.array(matrix.to_rows(), dtype=np.uint64).astype(np.uint8)    # the low byte of each value


def signature_pairs(pairs: list[tuple[str, str]], config: NearDupConfig) -> tuple[np.ndarray, np.ndarray]:
    """`signatures` of the whole texts and of the outputs of `record_texts` pairs, hashing each text once.

    A record's whole text ends with its output after a newline, and lower-casing does not look
    across a newline, so the output's n-grams are the last ones of the whole text's (the same
    padding ends both): they are taken from there, not hashed again. A pair that is not so
    (an empty output, whose one n-gram is padding) has its output hashed alone.
    """
    if not pairs:
        empty = np.zeros((0, config.num_perm), dtype=np.uint8)
        return empty, empty
    wholes = [whole.lower() for whole, _ in pairs]
    hashes, offsets = _lowered_hashes(wholes, config.ngram)
    ends = offsets[1:].astype(np.int64)
    parts, lengths = [], []
    for k, (_, output) in enumerate(pairs):
        lowered = output.lower()
        if lowered and wholes[k].endswith("\n" + lowered):
            part = hashes[ends[k] - len(lowered):ends[k]]
        else:
            part = ngram_hashes([output], config.ngram)[0]
        parts.append(part)
        lengths.append(len(part))
    out_offsets = np.zeros(len(pairs) + 1, dtype=np.uint64)
    np.cumsum(lengths, out=out_offsets[1:])
    both = _minhash(np.concatenate([hashes, *parts]), np.concatenate([offsets, out_offsets[1:] + offsets[-1]]),
                    config)
    return both[:len(pairs)], both[len(pairs):]


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
            whole, output = signature_pairs(self._pending, self.config)
            self._whole.append(whole)
            self._output.append(output)
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


@dataclass
class Matches:
    """Near-duplicate matches as arrays, in index order of the dropped record (what `find_matches` gives
    as a dict): record `index[k]` is a near duplicate of the kept record `kept[k]`."""

    index: np.ndarray               # int64, increasing
    kept: np.ndarray                # int64
    similarity: np.ndarray          # float64, rounded to 4 places
    output_similarity: np.ndarray   # float64, rounded to 4 places

    def __len__(self) -> int:
        return len(self.index)

    def as_dict(self) -> dict[int, Match]:
        return {i: Match(i, j, s, o) for i, j, s, o in zip(self.index.tolist(), self.kept.tolist(),
                                                            self.similarity.tolist(),
                                                            self.output_similarity.tolist())}


class _Band:
    """One LSH band's buckets, as what a record needs to list its candidates.

    Records are sorted by band key (stably, so a bucket's members are in index
    order). A record's candidates in this band are the first min(rank, max_candidates)
    members of its bucket, where rank is how many members come before it:
    `order[start[i] + w]` for w < rank[i]. 9 bytes a record, whatever the buckets' sizes.
    """

    def __init__(self, band: np.ndarray, max_candidates: int):
        n = band.shape[0]
        keys = _band_keys(band)
        order = np.argsort(keys, kind="stable")          # equal keys keep index order
        sorted_keys = keys[order]
        del keys
        new_group = np.empty(n, dtype=bool)
        new_group[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new_group[1:])
        del sorted_keys
        self.empty = bool(new_group.all())               # every bucket has one record: no candidates
        if self.empty:
            return
        position = np.arange(n, dtype=np.int64)
        group_start = np.maximum.accumulate(np.where(new_group, position, 0))
        rank = position - group_start
        del position, new_group
        self.order = order.astype(np.int32 if n < 2**31 else np.int64)
        self.start = np.empty(n, dtype=self.order.dtype)
        self.start[order] = group_start
        self.rank = np.empty(n, dtype=np.min_scalar_type(max_candidates))
        self.rank[order] = np.minimum(rank, max_candidates)

    def candidates(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(earlier, later) pairs for the later records lo..hi-1 (int64)."""
        if self.empty:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        rank = self.rank[lo:hi]
        later = np.nonzero(rank)[0]
        counts = rank[later].astype(np.int64)
        total = int(counts.sum())
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        later += lo
        ends = np.cumsum(counts)
        w = np.arange(total, dtype=np.int64) - np.repeat(ends - counts, counts)   # 0..rank-1 per later record
        later = np.repeat(later, counts)
        return self.order[self.start[later] + w].astype(np.int64), later


def candidate_pairs(whole: np.ndarray, config: NearDupConfig) -> np.ndarray:
    """Unique (earlier, later) index pairs that share at least one LSH band, as int64 codes earlier*N+later.

    All pairs at once (for tests and small inputs): `find_matches` lists them a slice of records at a time.
    """
    n = whole.shape[0]
    rows = config.num_perm // config.bands
    found = []
    for b in range(config.bands):
        earlier, later = _Band(whole[:, b * rows:(b + 1) * rows], config.max_candidates).candidates(0, n)
        found.append(earlier * n + later)
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


# Later records per slice of find_matches: at most PAIRS_PER_SLICE candidate pairs (bands x max_candidates
# a record) are listed at once, whatever the buckets' sizes.
PAIRS_PER_SLICE = 2_000_000


def find_matches(whole: np.ndarray, output: np.ndarray, config: NearDupConfig,
                 exclude: set[int] | np.ndarray = frozenset(), chunk: int = 100_000) -> dict[int, Match]:
    """Greedy keep-first over verified LSH candidates (see the module docstring), as a dict index -> Match.

    Indices in `exclude` (exact duplicates, dropped elsewhere) are never kept and never matched.
    """
    return match_arrays(whole, output, config, exclude, chunk).as_dict()


def match_arrays(whole: np.ndarray, output: np.ndarray, config: NearDupConfig,
                 exclude: set[int] | np.ndarray = frozenset(), chunk: int = 100_000,
                 slice_records: int | None = None) -> Matches:
    """`find_matches` as arrays, in memory that does not grow with the size of the clusters.

    Record i is dropped as a near duplicate of the smallest j among its LSH
    candidates (in any band, the first `max_candidates` records of its bucket)
    that reaches the threshold on both texts and is itself kept (not excluded,
    not dropped). Records are decided in index order, a slice at a time: a
    slice's candidate pairs (at most bands x max_candidates a record) are
    listed, those whose earlier record is already known to be dropped are
    left out, the rest are verified `chunk` pairs at a time, and the slice's
    records are decided. What is kept between slices is one flag a record;
    the LSH buckets take 9 bytes a record and band. `slice_records` (default:
    PAIRS_PER_SLICE / (bands x max_candidates)) sets the slice's length.
    """
    n = whole.shape[0]
    if n < 2:
        empty = np.zeros(0, np.int64)
        return Matches(empty, empty, np.zeros(0), np.zeros(0))
    rows = config.num_perm // config.bands
    gone = np.zeros(n, dtype=bool)                   # excluded or dropped: never a kept record
    if isinstance(exclude, np.ndarray) and exclude.dtype == bool:
        gone |= exclude
    elif len(exclude):
        gone[np.fromiter(exclude, dtype=np.int64, count=len(exclude))] = True
    excluded = gone.copy()
    bands = [_Band(whole[:, b * rows:(b + 1) * rows], config.max_candidates) for b in range(config.bands)]
    bands = [band for band in bands if not band.empty]
    step = slice_records or max(1, PAIRS_PER_SLICE // (config.bands * config.max_candidates))
    out: list[tuple[np.ndarray, ...]] = []
    for lo in range(0, n if bands else 0, step):
        hi = min(n, lo + step)
        pairs = [band.candidates(lo, hi) for band in bands]
        earlier = np.concatenate([e for e, _ in pairs])
        later = np.concatenate([l for _, l in pairs])
        del pairs
        keep = ~(gone[earlier] | excluded[later])
        codes = np.unique(later[keep] * n + earlier[keep])   # by later, then earlier: index order
        del earlier, later, keep
        if not len(codes):
            continue
        parts = []
        for start in range(0, len(codes), chunk):
            part = codes[start:start + chunk]
            j, i = part % n, part // n
            sim = similarity(whole[j], whole[i])
            out_sim = similarity(output[j], output[i])
            ok = (sim >= config.threshold) & (out_sim >= config.threshold)
            parts.append((i[ok], j[ok], sim[ok], out_sim[ok]))
        del codes
        later, earlier, sims, out_sims = (np.concatenate(c) for c in zip(*parts))
        if not len(later):
            continue
        decided = _keep_first(later, earlier, lo, gone)
        out.append((later[decided], earlier[decided], sims[decided], out_sims[decided]))
    if not out:
        empty = np.zeros(0, np.int64)
        return Matches(empty, empty, np.zeros(0), np.zeros(0))
    index, kept, sims, out_sims = (np.concatenate(c) for c in zip(*out))
    return Matches(index, kept, np.round(sims, 4), np.round(out_sims, 4))


def _keep_first(later: np.ndarray, earlier: np.ndarray, lo: int, gone: np.ndarray) -> np.ndarray:
    """Positions of the pairs that decide: for each later record, its first earlier record that is kept.

    `later, earlier` are a slice's verified pairs in index order (by later,
    then earlier), every earlier record before `lo` already kept; `gone` is
    updated with the records dropped. A later record whose first candidate is
    before the slice is decided at once; the others (their first candidate is
    in the slice, and may itself be dropped) are walked in index order.
    """
    first = np.ones(len(later), dtype=bool)
    first[1:] = later[1:] != later[:-1]
    heads = np.nonzero(first)[0]
    ends = np.append(heads[1:], len(later))
    settled = earlier[heads] < lo
    chosen = np.where(settled, heads, -1)
    gone[later[heads[settled]]] = True
    for k in np.nonzero(~settled)[0].tolist():
        for p in range(heads[k], ends[k]):
            if not gone[earlier[p]]:
                chosen[k] = p
                gone[later[p]] = True
                break
    return chosen[chosen >= 0]


def clusters(matches: dict[int, Match]) -> dict[int, list[int]]:
    """kept index -> the indices dropped as its near duplicates, in index order."""
    out: dict[int, list[int]] = {}
    for index in sorted(matches):
        out.setdefault(matches[index].kept, []).append(index)
    return out

