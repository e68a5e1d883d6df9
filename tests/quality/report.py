"""Print the cleaning rules' precision and recall on the evaluation set (`make quality`).

    python -m tests.quality.report                     # this tree's rules and params.yaml
    python -m tests.quality.report --misses            # and every record that got the wrong decision
    python -m tests.quality.report --details           # and every reject's detail
    PYTHONPATH=../old python tests/quality/report.py --params ../old/params.yaml
                                                       # another revision's rules, the same records
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__:
    from .evaluate import KEEP, judge, load, scores
else:                                    # run as a file, with another revision's cqia on PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from evaluate import KEEP, judge, load, scores


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.quality.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--category", default="zhihu", help="whose rules judge the records (default zhihu)")
    ap.add_argument("--misses", action="store_true", help="list the records that got the wrong decision")
    ap.add_argument("--details", action="store_true", help="list every reject with its reason code and detail")
    args = ap.parse_args(argv)

    from cqia.common.params import load_yaml

    verdicts = judge(load(), load_yaml(args.params), args.category)
    print(f"{len(verdicts)} records of tests/quality/records.yaml, judged with categories.{args.category} "
          f"of {args.params}")
    print()
    table = scores(verdicts)
    names = [s.label if s.label == KEEP else f"`{s.label}`" for s in table]
    width = max(map(len, names + ["decision"]))
    print(f"| {'decision':<{width}} | labelled | got | right | precision | recall |")
    print(f"|{'-' * (width + 2)}|---------:|----:|------:|----------:|-------:|")
    for name, s in zip(names, table):
        print(f"| {name:<{width}} | {s.support:8} | {s.predicted:3} | {s.correct:5} | {fmt(s.precision):>9} | "
              f"{fmt(s.recall):>6} |")
    wrong = [v for v in verdicts if v.label != v.got]
    print()
    print(f"{len(verdicts) - len(wrong)} of {len(verdicts)} decisions right")
    if args.details:
        for v in verdicts:
            if v.got != KEEP:
                print(f"  {v.id}  {v.got}: {v.detail}")
    if args.misses:
        for v in wrong:
            print(f"  {v.id}: labelled {v.label}, got {v.got}" + (f" ({v.detail})" if v.detail else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
