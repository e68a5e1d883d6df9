"""Near-duplicate matching in bounded memory (issue 16): the same decisions as the algorithm it replaced.

`reference_find_matches` is the matcher as it was at 68f3fae (cqia/dedup/neardup.py,
`candidate_pairs` + `find_matches`), kept verbatim: it listed every candidate pair of
the release at once, so its memory grew with the size of near-duplicate clusters.
The matcher now decides a slice of records at a time; these tests compare both on
generated data (the benchmark's duplication-heavy corpus and clustered signatures),
with slices small enough that clusters cross slice boundaries.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.generate import generate
from cqia.dedup.neardup import Match, NearDupConfig, _band_keys, find_matches, match_arrays, signatures, similarity


def reference_candidate_pairs(whole: np.ndarray, config: NearDupConfig) -> np.ndarray:
    n = whole.shape[0]
    rows = config.num_perm // config.bands
    found: list[np.ndarray] = []
    for b in range(config.bands):
        keys = _band_keys(whole[:, b * rows:(b + 1) * rows])
        order = np.argsort(keys, kind="stable")
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


def reference_find_matches(whole, output, config, exclude=frozenset(), chunk=100_000) -> dict[int, Match]:
    n = whole.shape[0]
    codes = reference_candidate_pairs(whole, config)
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
    order = np.lexsort((earlier, later))
    dropped: dict[int, Match] = {}
    for i, j, s, o in zip(later[order].tolist(), earlier[order].tolist(),
                          sims[order].tolist(), out_sims[order].tolist()):
        if i in dropped or j in dropped or i in exclude or j in exclude:
            continue
        dropped[i] = Match(i, j, round(s, 4), round(o, 4))
    return dropped


def clustered_signatures(n: int, seed: int, num_perm: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """b-bit signatures where most records belong to clusters of 2-200 near-identical members."""
    rng = np.random.default_rng(seed)
    whole = rng.integers(0, 256, (n, num_perm), dtype=np.uint8)
    output = rng.integers(0, 256, (n, num_perm), dtype=np.uint8)
    i = 0
    while i < n:
        size = int(rng.integers(2, 200))
        members = np.sort(rng.choice(n, size=min(size, n), replace=False))
        head = members[0]
        for m in members[1:]:
            noise = rng.random(num_perm) < rng.uniform(0.0, 0.3)
            whole[m] = np.where(noise, rng.integers(0, 256, num_perm, dtype=np.uint8), whole[head])
            noise = rng.random(num_perm) < rng.uniform(0.0, 0.3)
            output[m] = np.where(noise, rng.integers(0, 256, num_perm, dtype=np.uint8), output[head])
        i += size
    return whole, output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Texts of the benchmark's duplication-heavy corpus (30% of records in clusters of 2-50 members)."""
    root = tmp_path_factory.mktemp("raw")
    texts = []
    for spec in generate(root, 4000, 3, seed=5, clusters=0.3):
        if spec.format == "coig-human-value":
            continue
        for line in (root / spec.name / "train.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            ins, out = obj.get("instruction", obj.get("prompt")), obj.get("output", obj.get("answer"))
            if isinstance(ins, str) and isinstance(out, str):
                texts.append((f"{ins}\n\n{out}", out))
    config = NearDupConfig()
    return (signatures([w for w, _ in texts], config), signatures([o for _, o in texts], config))


@pytest.mark.parametrize("slice_records", [7, 400, None])
@pytest.mark.parametrize("config", [NearDupConfig(), NearDupConfig(max_candidates=2, threshold=0.6),
                                    NearDupConfig(bands=32, max_candidates=40, threshold=0.5)])
def test_decisions_on_the_duplication_heavy_corpus_are_the_old_algorithms(corpus, config, slice_records):
    whole, output = corpus
    exclude = set(range(0, len(whole), 37))            # some records are exact duplicates, dropped elsewhere
    old = reference_find_matches(whole, output, config, exclude)
    assert len(old) > 300                               # the corpus has clusters: many records are matched
    new = match_arrays(whole, output, config, exclude, slice_records=slice_records)
    assert new.as_dict() == old
    assert match_arrays(whole, output, config, exclude, chunk=97, slice_records=slice_records).as_dict() == old


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decisions_on_big_clusters_are_the_old_algorithms(seed):
    whole, output = clustered_signatures(3000, seed)
    config = NearDupConfig(threshold=0.7)
    exclude = np.zeros(len(whole), dtype=bool)
    exclude[::51] = True
    old = reference_find_matches(whole, output, config, set(np.nonzero(exclude)[0].tolist()))
    assert len(old) > 1000
    assert match_arrays(whole, output, config, exclude, slice_records=20).as_dict() == old
    assert find_matches(whole, output, config, exclude) == old


def test_match_arrays_are_in_index_order_and_round_like_the_dict():
    whole, output = clustered_signatures(500, 4)
    arrays = match_arrays(whole, output, NearDupConfig(threshold=0.7))
    assert np.all(np.diff(arrays.index) > 0) and np.all(arrays.kept < arrays.index)
    assert arrays.as_dict() == reference_find_matches(whole, output, NearDupConfig(threshold=0.7))


def test_no_records_and_no_candidates():
    empty = np.zeros((0, 128), np.uint8)
    assert find_matches(empty, empty, NearDupConfig()) == {}
    distinct = np.arange(256, dtype=np.uint8).repeat(128).reshape(256, 128)
    assert find_matches(distinct, distinct, NearDupConfig()) == {}
