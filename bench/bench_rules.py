"""Benchmark: the rules step and normalisation, in µs per record, on the same records.

    python -m bench.bench_rules                                   # this tree's code and params
    python -m bench.bench_rules --source eval --replicate 30      # the evaluation set, 30 times over
    PYTHONPATH=../other-tree python bench/bench_rules.py --params ../other-tree/params.yaml
                                                                  # another revision's code, same records

Records: `--source generate` (default) writes `--records` synthetic raw records
with bench/generate.py (seed 0) and reads its cqia-jsonl categories;
`--source eval` reads tests/quality/records.yaml (or `--eval FILE`)
`--replicate` times; `--source sample` reads data/raw/zhihu/train.jsonl.
Each record is judged with one category's rules (`--category`, default
zhihu) as the category stage does: the rules that read the raw text
(`RuleSet.before_normalise`), normalisation (the category's chain), then, if
those passed, the rules on the normalised record (`RuleSet.check`). PII masking is not timed
(unchanged, and measured in README "Speed"). Prints the minimum over `--runs`
runs of the rules step (before_normalise + check) and of normalisation, per
record, in CPU time of this process (`time.process_time`: other processes on a
shared machine slow it less than they slow the wall clock).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("instruction", "input", "output")


def read_jsonl(path: Path) -> list[dict]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:          # the generator's broken lines: not the rules' business
            continue
        if isinstance(obj, dict) and all(isinstance(obj.get(k, ""), str) for k in TEXT):
            task_type = obj.get("task_type")
            out.append({"instruction": obj.get("instruction", ""), "input": obj.get("input", ""),
                        "output": obj.get("output", ""),
                        "task_type": task_type if isinstance(task_type, dict) else {"major": ["问答"], "minor": []}})
    return out


def records(source: str, count: int, eval_file: Path, replicate: int) -> list[dict]:
    if source == "eval":
        from ruamel.yaml import YAML

        entries = YAML(typ="safe", pure=True).load(eval_file.read_text(encoding="utf-8"))
        return [{"instruction": e["instruction"], "input": e.get("input", ""), "output": e["output"],
                 "task_type": e.get("task_type", {"major": ["问答"], "minor": ["知乎问答"]})}
                for e in entries] * replicate
    if source == "sample":
        return read_jsonl(ROOT / "data/raw/zhihu/train.jsonl") * replicate
    from bench.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        specs = generate(Path(tmp), count, 6, seed=0)
        out = []
        for spec in specs:
            if spec.format == "cqia-jsonl":
                out += read_jsonl(Path(tmp) / spec.name / "train.jsonl")
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_rules", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=("generate", "eval", "sample"), default="generate")
    ap.add_argument("--records", type=int, default=10_000, help="records bench/generate.py writes (default 10000)")
    ap.add_argument("--eval", type=Path, default=ROOT / "tests/quality/records.yaml")
    ap.add_argument("--replicate", type=int, default=1, help="read --source eval or sample this many times over")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--category", default="zhihu")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args(argv)

    import cqia
    from cqia.common.params import load_yaml
    from cqia.ingest.config import load_checked_category
    from cqia.ingest.judge import Processor  # noqa: F401  (the stage's imports, warmed up)
    from cqia.ingest.normalize import normalize_text, rule_chain
    from cqia.ingest.rules import RuleSet

    category = load_checked_category(load_yaml(args.params), args.category, str(args.params))
    rules = RuleSet(category.rules, "rules")
    chain = rule_chain(category.normalize)
    raws = records(args.source, args.records, args.eval, args.replicate)
    normed = []
    for raw in raws:
        rec = dict(raw)
        for field in TEXT:
            rec[field] = normalize_text(raw[field], chain)[0]
        normed.append(rec)

    def time_rules() -> float:
        start = time.process_time()
        for raw, rec in zip(raws, normed):
            if not rules.before_normalise(raw):     # as the stage: the first reject ends the record
                rules.check(rec)
        return time.process_time() - start

    def time_normalize() -> float:
        start = time.process_time()
        for raw in raws:
            for field in TEXT:
                normalize_text(raw[field], chain)
        return time.process_time() - start

    rule_s = min(time_rules() for _ in range(args.runs))
    norm_s = min(time_normalize() for _ in range(args.runs))
    chars = sum(len(r["instruction"]) + len(r["input"]) + len(r["output"]) for r in raws) / len(raws)
    print(f"code: {Path(cqia.__file__).parent.parent}  params: {args.params} ({args.category})")
    print(f"records: {len(raws)} from {args.source}, {chars:.0f} characters each on average")
    print(f"rules step (before_normalise + check): {rule_s / len(raws) * 1e6:.2f} µs/record")
    print(f"normalisation ({', '.join(chain)}): {norm_s / len(raws) * 1e6:.2f} µs/record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
