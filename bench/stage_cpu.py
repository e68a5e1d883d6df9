"""Where a stage's CPU goes: its wall time, the CPU of its main process and of its worker processes.

    python -m bench.run --records 1000000 --keep
    python -m bench.stage_cpu --repo bench/out/repo-1000000/repo --stage category@cqia_01 --workers 1 2

Runs the stage's command as dvc.lock records it, in the kept bench repo (its outputs are rewritten
with the same bytes), once per `--workers` value (CQIA_WORKERS) and `--runs` times each, and
prints per run: wall seconds, CPU seconds of the stage's own process and of the children it
waited for (the category stage's forked workers), and both per record. The Great Expectations
server is a detached process: its CPU is in neither column. On a machine of N cores the stage
cannot be faster than (main + workers CPU) / N; where wall time is above that, the cores waited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.profile import stage_command, stage_parser  # noqa: E402
from bench.run import isolated_env  # noqa: E402

# Runs the stage's `python -m` module in this process and reports, at exit (a stage ends with
# os._exit after the atexit handlers: cqia.common.entry.exit_now), the CPU of this process and
# of its waited-for children.
_MEASURE = """
import atexit, json, os, resource, runpy, sys, time
module, out, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
start = time.perf_counter()

def report():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as handle:
        json.dump({"wall_s": time.perf_counter() - start, "main_cpu_s": own.ru_utime + own.ru_stime,
                   "workers_cpu_s": kids.ru_utime + kids.ru_stime}, handle)

atexit.register(report)
sys.path.insert(0, os.getcwd())
sys.argv = [module, *argv]
runpy.run_module(module, run_name="__main__")
"""


def records_of(repo: Path, stage: str) -> int | None:
    """The stage's records, from its metrics (a category stage's raw records)."""
    name = stage.partition("@")[2]
    metrics = repo / "data" / "stages" / name / "metrics.json"
    if stage.startswith("category@") and metrics.is_file():
        return json.loads(metrics.read_text(encoding="utf-8"))["raw"]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("bench.stage_cpu", __doc__, "category@cqia_01")
    ap.add_argument("--workers", nargs="+", default=[""], help="CQIA_WORKERS values to run with (default: unset)")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args(argv)
    repo = args.repo.resolve()
    cmd = stage_command(repo, args.stage)
    if cmd[:2] != ["python", "-m"]:
        raise SystemExit(f"error: stage {args.stage}: command {cmd[:3]} is not `python -m ...`")
    records = records_of(repo, args.stage)
    out = repo.parent / "stage_cpu.json"
    print(f"{args.stage}: {records or '?'} records, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{'CQIA_WORKERS':>12} {'wall s':>8} {'main CPU s':>11} {'workers CPU s':>14}"
          + (f" {'main µs/rec':>12} {'workers µs/rec':>15}" if records else ""))
    for workers in args.workers:
        env = {**isolated_env(repo.parent)}
        if workers:
            env["CQIA_WORKERS"] = workers
        for _ in range(args.runs):
            proc = subprocess.run([sys.executable, "-c", _MEASURE, cmd[2], str(out), *cmd[3:]], cwd=repo, env=env)
            if proc.returncode:
                print(f"error: stage {args.stage} exited {proc.returncode}", file=sys.stderr)
                return 1
            m = json.loads(out.read_text(encoding="utf-8"))
            line = f"{workers or '(cores)':>12} {m['wall_s']:>8.2f} {m['main_cpu_s']:>11.2f} {m['workers_cpu_s']:>14.2f}"
            if records:
                line += f" {m['main_cpu_s'] / records * 1e6:>12.1f} {m['workers_cpu_s'] / records * 1e6:>15.1f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
