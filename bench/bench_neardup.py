"""Benchmark near-duplicate detection (cqia/dedup/neardup.py) on synthetic Chinese records.

    .venv/bin/python bench/bench_neardup.py --n 100000

Generates N records of random Chinese text (instruction 10-40 characters,
output 80-400), of which about 5% are planted near duplicates of an earlier
record (one character of the instruction or the output replaced, inserted or
deleted, or a punctuation mark swapped) and about 2% repeat an earlier
record's instruction with a new output (as 100PoisonMpts does; these must NOT
be matched). Texts are generated before the clock starts; the timed part is
what the category stages and dedup do: signatures for every record, LSH candidates, verification
and the keep-first decision. Prints documents per second, recall on the
planted near duplicates, false matches, and memory.

By default Rust MinHash runs on one thread (RAYON_NUM_THREADS=1), to compare
with datasketch's one-core figure; `--threads 0` lets rensa use every core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def generate(n: int, seed: int):
    """(records, planted near-duplicate pairs, same-instruction pairs); records are dicts of the text fields."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = np.array([ord(c) for c in
                      "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"
                      "，。、？！：；“”（）"], dtype=np.uint32)
    punct = [ord(c) for c in "，。、？！：；"]

    def text(length: int) -> str:
        return vocab[rng.integers(0, len(vocab), length)].tobytes().decode("utf-32-le")

    def edit(s: str) -> str:
        pos = int(rng.integers(0, len(s)))
        kind = int(rng.integers(0, 4))
        new = chr(int(vocab[rng.integers(0, len(vocab))]))
        if kind == 0:
            return s[:pos] + new + s[pos + 1:]
        if kind == 1:
            return s[:pos] + new + s[pos:]
        if kind == 2 and len(s) > 1:
            return s[:pos] + s[pos + 1:]
        return s[:pos] + chr(punct[int(rng.integers(0, len(punct)))]) + s[pos + 1:]

    records: list[tuple[str, str, str]] = []
    near: list[tuple[int, int]] = []
    same_prompt: list[tuple[int, int]] = []
    for i in range(n):
        roll = rng.random()
        if i > 10 and roll < 0.05:
            j = int(rng.integers(0, i))
            ins, inp, out = records[j]
            if rng.random() < 0.5:
                ins = edit(ins)
            else:
                out = edit(out)
            records.append((ins, inp, out))
            near.append((j, i))
        elif i > 10 and roll < 0.07:
            j = int(rng.integers(0, i))
            records.append((records[j][0], "", text(int(rng.integers(80, 401)))))
            same_prompt.append((j, i))
        else:
            records.append((text(int(rng.integers(10, 41))), "", text(int(rng.integers(80, 401)))))
    keys = ("instruction", "input", "output")
    return [dict(zip(keys, r)) for r in records], near, same_prompt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="number of records (default 100000)")
    ap.add_argument("--threads", type=int, default=1, help="rensa threads (default 1; 0 = all cores)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    args = ap.parse_args(argv)
    if args.threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    import resource

    import psutil

    from cqia.dedup.neardup import NearDupConfig, NearDupIndex, clusters, record_texts

    config = NearDupConfig()
    t0 = time.perf_counter()
    records, near, same_prompt = generate(args.n, args.seed)
    t_gen = time.perf_counter() - t0
    chars = sum(len(r["instruction"]) + len(r["output"]) for r in records)
    base_rss = psutil.Process().memory_info().rss

    start, cpu_start = time.perf_counter(), time.process_time()
    index = NearDupIndex(config)
    for record in records:
        index.add(*record_texts(record))
    t_sig = time.perf_counter() - start
    matches = index.matches()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # Every planted near duplicate should be dropped (as a duplicate of its source, or of an
    # earlier record its source was itself dropped for, which is the same text family).
    found = sum(1 for _, i in near if i in matches)
    planted = {i for _, i in near}
    false = [m for m in matches.values() if m.index not in planted]
    same_hit = sum(1 for _, i in same_prompt if i in matches and i not in planted)
    sig_bytes = sum(a.nbytes for a in index._whole + index._output)
    print(f"records: {args.n}  characters: {chars}  (generated in {t_gen:.1f} s)")
    print(f"config: {config.as_dict()}  rensa threads: {args.threads or 'all'}")
    print(f"signatures: {t_sig:.2f} s   LSH + verification + keep-first: {elapsed - t_sig:.2f} s")
    print(f"total: {elapsed:.2f} s = {args.n / elapsed:,.0f} documents/s "
          f"(CPU time {cpu:.2f} s = {args.n / cpu:,.0f} documents per CPU-second)")
    missed = [(j, i) for j, i in near if i not in matches]
    chained = sum(1 for j, _ in missed if j in matches)
    print(f"planted near duplicates found: {found}/{len(near)} ({found / max(len(near), 1):.1%}); "
          f"clusters: {len(clusters(matches))}")
    print(f"  missed {len(missed)}, of which {chained} are copies of a record that was itself dropped "
          f"(records are matched only to kept records)")
    print(f"same instruction, different output, matched (must be 0): {same_hit}/{len(same_prompt)}")
    print(f"other matches (not planted): {len(false)}")
    print(f"signature memory: {sig_bytes / 1e6:.1f} MB ({sig_bytes / args.n:.0f} bytes/record); "
          f"peak RSS above the generated data: {(peak - base_rss) / 1e6:.0f} MB "
          f"(process peak {peak / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
