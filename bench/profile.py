"""Profile one stage of a bench repo with cProfile and print its hotspots.

    python -m bench.run --records 100000 --keep
    python -m bench.profile --repo bench/out/repo-100000/repo --stage category@cqia_01
    python -m bench.profile --repo bench/out/repo-100000/repo --stage publish@cqia_01 --sort tottime

Runs the stage's command exactly as dvc.lock records it, under
`python -m cProfile -o <out>`, in the repo (the outputs are rewritten with the
same bytes), in one process (`CQIA_WORKERS=1`: cProfile would not see a
category stage's worker processes). Prints the project's own functions by cumulative time with their
share of the stage's total, then every function by own time, and writes the profile to bench/out/profile-<stage>.prof
(open it with `python -m pstats` or snakeviz). Profiling slows pure-Python
code down, so shares matter more than absolute seconds.
"""

from __future__ import annotations

import argparse
import pstats
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import OUT, isolated_env  # noqa: E402
from cqia.ingest.parallel import WORKERS_ENV  # noqa: E402

_PROFILE_MAIN = """
import cProfile, importlib, sys
out, module, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
main = importlib.import_module(module).main
profile = cProfile.Profile()
code = profile.runcall(main, argv)
profile.dump_stats(out)
sys.exit(code or 0)
"""


def stage_parser(prog: str, doc: str | None, example: str) -> argparse.ArgumentParser:
    """The arguments every per-stage bench tool takes: a kept bench repo and one of its stages."""
    ap = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True, help="a bench repo kept by `bench.run --keep`")
    ap.add_argument("--stage", required=True, help=f"a stage name of dvc.lock, e.g. {example}")
    return ap


def stage_command(repo: Path, stage: str) -> list[str]:
    """The stage's command line as dvc.lock records it."""
    from ruamel.yaml import YAML

    lock = repo / "dvc.lock"
    if not lock.is_file():
        raise SystemExit(f"error: {lock}: not found. Fix: run `python -m bench.run --keep` first")
    stages = YAML(typ="safe", pure=True).load(lock.read_text(encoding="utf-8"))["stages"]
    if stage not in stages:
        raise SystemExit(f"error: {lock}: no stage {stage!r}. Fix: use one of {sorted(stages)}")
    return shlex.split(stages[stage]["cmd"])


def hotspots(prof: Path, top: int, sort: str = "cumulative", under: Path | None = None) -> tuple[float, list[dict[str, Any]]]:
    """(total seconds, the top functions: name, calls, own and cumulative seconds, share of total).

    With `under`, only functions defined in files below that directory (the
    project's own code in the bench repo) are listed.
    """
    stats = pstats.Stats(str(prof))
    total = stats.total_tt
    rows = []
    for (file, line, name), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if under is not None and not file.startswith(f"{under}/"):
            continue
        where = name if file == "~" else f"{_short(file, under)}:{line}({name})"
        rows.append({"function": where, "file": file, "calls": calls, "own_s": own, "cum_s": cum,
                     "share": cum / total if total else 0.0})
    key = "cum_s" if sort == "cumulative" else "own_s"
    rows.sort(key=lambda r: r[key], reverse=True)
    return total, rows[:top]


def _short(file: str, under: Path | None) -> str:
    if under is not None and file.startswith(f"{under}/"):
        return file[len(str(under)) + 1:]
    parts = Path(file).parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1:])
    return Path(file).name


def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("bench.profile", __doc__, "category@<name>, dedup, publish@<name>, merge, report")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", choices=("cumulative", "tottime"), default="cumulative")
    ap.add_argument("--out", type=Path, help="profile file (default bench/out/profile-<stage>.prof)")
    args = ap.parse_args(argv)
    repo = args.repo.resolve()
    cmd = stage_command(repo, args.stage)
    if cmd[:2] != ["python", "-m"]:
        raise SystemExit(f"error: stage {args.stage}: command {cmd[:3]} is not `python -m ...`; cannot profile it")
    out = (args.out or OUT / f"profile-{args.stage.replace('@', '-')}.prof").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # In one process: cProfile sees only the process it runs in, not a category stage's workers.
    # The stage's `main` is profiled, not `python -m`: a stage ends with os._exit
    # (cqia.common.entry.exit_now), which would leave `cProfile -o` no moment to write its file.
    proc = subprocess.run([sys.executable, "-c", _PROFILE_MAIN, str(out), cmd[2], *cmd[3:]], cwd=repo,
                          env={**isolated_env(repo.parent), WORKERS_ENV: "1"})
    wall = time.perf_counter() - start
    if proc.returncode:
        print(f"error: stage {args.stage} exited {proc.returncode} under the profiler", file=sys.stderr)
        return 1
    total, own = hotspots(out, args.top, args.sort, under=repo)
    _, everything = hotspots(out, args.top, "tottime")
    print(f"{args.stage}: {wall:.1f} s wall under cProfile, {total:.1f} s profiled; profile: {out}")
    for title, rows in ((f"the project's functions (cqia/, stages/), by {args.sort} time", own),
                        ("every function, by own time", everything)):
        print(f"\n{title}\n{'cum s':>8} {'share':>6} {'own s':>8} {'calls':>10}  function")
        for r in rows:
            print(f"{r['cum_s']:>8.2f} {r['share']:>6.1%} {r['own_s']:>8.2f} {r['calls']:>10}  {r['function']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
