"""Where a stage's memory goes: its peak RSS, and what Python and numpy hold at the peak.

    python -m bench.run --records 200000 --clusters 0.3 --keep
    python -m bench.memory --repo bench/out/repo-200000-clusters0.3/repo --stage dedup
    python -m bench.memory --repo ... --stage dedup --source /path/to/other/checkout   # another version's code

Runs the stage's command as dvc.lock records it, in the repo (its outputs are
rewritten), in one process (`CQIA_WORKERS=1`; its gate in a helper of its own, `CQIA_GX_SERVER=0`), with tracemalloc on (numpy
reports its arrays to it) and a thread that samples RSS every 10 ms. When the
traced total reaches a new high (by 5%), it takes a snapshot; the last one is
the peak. Prints the peak RSS (getrusage), the traced peak, and the lines that
held the most at that moment. `--source` puts another checkout's `cqia/` and
`stages/` first on the path, to compare two versions on the same data.
tracemalloc slows allocation-heavy Python code down and adds its own
bookkeeping to RSS: read its sizes, not seconds; `--rss-only` runs without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.profile import stage_command, stage_parser  # noqa: E402
from bench.run import isolated_env  # noqa: E402
from cqia.ingest.parallel import WORKERS_ENV  # noqa: E402

# Runs `python -m <module> <args>` (argv: source dir, result file, top, module, args...) under tracemalloc.
WRAPPER = """import json, os, resource, runpy, sys, threading, time, tracemalloc
src, result, top, trace, module, *args = sys.argv[1:]
sys.path.insert(0, src)
if trace == "1":
    tracemalloc.start(1)
state = {"rss": 0, "rss_at": 0.0, "best": 0, "snapshot": None, "stop": False}
t0 = time.perf_counter()
page = os.sysconf("SC_PAGE_SIZE")

def sample():
    while not state["stop"]:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * page
        if rss > state["rss"]:
            state["rss"], state["rss_at"] = rss, time.perf_counter() - t0
        current = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
        if current > 1.05 * state["best"] and current > 16 << 20:
            state["best"], state["snapshot"] = current, tracemalloc.take_snapshot()
        time.sleep(0.01)

thread = threading.Thread(target=sample, daemon=True)
thread.start()
sys.argv = [module, *args]
code = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code or 0
state["stop"] = True
thread.join()
traced_peak = tracemalloc.get_traced_memory()[1]
lines = []
if state["snapshot"] is not None:
    for stat in state["snapshot"].statistics("lineno")[:int(top)]:
        frame = stat.traceback[0]
        lines.append({"where": f"{frame.filename}:{frame.lineno}", "mb": stat.size / 2**20, "blocks": stat.count})
with open(result, "w") as out:
    json.dump({"exit": code, "wall_s": time.perf_counter() - t0,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "cpu_s": sum(os.times()[:2]),
               "sampled_peak_rss_mb": state["rss"] / 2**20, "sampled_peak_at_s": state["rss_at"],
               "traced_peak_mb": traced_peak / 2**20, "snapshot_mb": state["best"] / 2**20, "top": lines}, out)
sys.exit(code)
"""


def measure_stage(repo: Path, stage: str, source: Path | None = None, top: int = 12, trace: bool = True) -> dict:
    """Run `stage` of a kept bench repo under WRAPPER; return what it measured."""
    cmd = stage_command(repo, stage)
    if cmd[:2] != ["python", "-m"]:
        raise SystemExit(f"error: stage {stage}: command {cmd[:3]} is not `python -m ...`")
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result = Path(handle.name)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(source or repo), str(result), str(top),
                           "1" if trace else "0", *cmd[2:]],
                          cwd=repo, env={**isolated_env(repo.parent), WORKERS_ENV: "1", "CQIA_GX_SERVER": "0"})
    out = json.loads(result.read_text())
    result.unlink()
    out["command_wall_s"] = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"error: stage {stage} exited {proc.returncode}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("bench.memory", __doc__, "dedup")
    ap.add_argument("--source", type=Path, help="a checkout whose cqia/ and stages/ run instead of the repo's copy")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--rss-only", action="store_true",
                    help="no tracemalloc (its own bookkeeping adds to RSS): the peak RSS as in the pipeline")
    args = ap.parse_args(argv)
    repo = args.repo.resolve()
    out = measure_stage(repo, args.stage, args.source.resolve() if args.source else None, args.top,
                        trace=not args.rss_only)
    print(f"{args.stage}: peak RSS {out['peak_rss_mb']:.1f} MB (sampled {out['sampled_peak_rss_mb']:.1f} MB at "
          f"{out['sampled_peak_at_s']:.1f} s of {out['wall_s']:.1f} s); CPU {out['cpu_s']:.1f} s; "
          f"traced peak {out['traced_peak_mb']:.1f} MB")
    if args.rss_only:
        return 0
    print(f"held at the traced high ({out['snapshot_mb']:.1f} MB), by line:")
    for line in out["top"]:
        where = line["where"]
        for prefix in (str(args.source.resolve()) if args.source else str(repo), str(ROOT)):
            where = where.removeprefix(prefix + "/")
        print(f"  {line['mb']:9.1f} MB {line['blocks']:>9}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
