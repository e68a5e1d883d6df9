"""The category stage on this machine's cores against the same stage on a one-node Ray cluster.

    python -m bench.ray_compare --records 200000            # about 10 minutes here
    python -m bench.ray_compare --show bench/out/ray-200000/results.json

Generates one cqia-jsonl source category of `--records` records (bench/generate.py,
seed 0) under bench/out/ray-<N>/, with the registry's params (near-duplicate
sketching on, as params.yaml has it), and times `python -m stages.category` on it:

* local: forked workers on every core (the default), `--runs` times, and once in
  one process (CQIA_WORKERS=1);
* ray: CQIA_EXECUTOR=ray against a Ray head this script starts on 127.0.0.1
  (tests.sandbox.ray_head, `--cpus` CPUs, no dashboard), `--runs` times;
* start-up: `ray start --head` until it is up, and a small category (2,000
  records, 5 chunks) both ways: the difference is what joining the cluster costs
  a stage (connecting, shipping the code, starting workers, building the
  processor in each).

Every run's outputs must be the same bytes, or the script fails. It prints the
table (wall, CPU of the stage's process tree: with Ray that is the driver alone,
the peak RSS of the stage and of the Ray workers) with the load average, since
the machine is shared, and writes it all to results.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ("accepted.jsonl.zst", "lineage.jsonl.zst", "rejects.jsonl", "keys.parquet", "metrics.json")
MB = 1024 * 1024


def prepare(work: Path, records: int) -> tuple[Path, str, int]:
    """Raw data and params of one generated category under work/ (kept between runs): (params, name, raw bytes)."""
    from bench.generate import generate
    from bench.run import write_params

    done = work / "generated.json"
    if not done.exists():
        shutil.rmtree(work / "raw", ignore_errors=True)
        (spec,) = generate(work / "raw", records, 1, seed=0)
        write_params(ROOT / "params.yaml", work / "params.yaml", [spec], neardup=True)
        (work / "reviews.jsonl").write_bytes(b"")
        done.write_text(json.dumps(spec.summary()))
    summary = json.loads(done.read_text())
    return work / "params.yaml", summary["name"], summary["bytes"]


def stage_cmd(work: Path, params: Path, name: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "stages.category", "--category", name, "--params", str(params),
            "--raw-dir", str(work / "raw" / name), "--reviews", str(work / "reviews.jsonl"),
            "--schema", str(ROOT / "schemas/record.schema.json"), "--suite", str(ROOT / "expectations/default.json"),
            *[arg for output in OUTPUTS for arg in (f"--{output.split('.')[0]}", str(out / output))]]


def digest(out: Path) -> str:
    sha = hashlib.sha256()
    for name in OUTPUTS:
        sha.update((out / name).read_bytes())
    return sha.hexdigest()


class RayWorkerPeak:
    """The largest RSS of a Ray worker process (`ray::IDLE`, `ray::judge_chunk`) of one head while it is polled."""

    def __init__(self, session: int):
        self.session, self.peak, self.workers = session, 0, set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _poll(self) -> None:
        import psutil

        while not self._done.wait(0.1):
            for proc in psutil.process_iter(["pid", "cmdline", "memory_info"]):
                try:
                    cmd = proc.info["cmdline"] or []
                    if (cmd and cmd[0].startswith("ray::") and not cmd[0].endswith("Agent")    # not Ray's agents
                            and os.getsid(proc.info["pid"]) == self.session):
                        self.workers.add(proc.info["pid"])
                        self.peak = max(self.peak, proc.info["memory_info"].rss)
                except (OSError, psutil.Error, TypeError, AttributeError):
                    continue


def timed(label: str, cmd: list[str], env: dict[str, str], out: Path, results: list, session: int | None = None,
          records: int = 0) -> dict[str, Any]:
    from bench.run import measure

    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()
    if session is None:
        m = measure(cmd, ROOT, env)
        worker_peak, workers = 0, 0
    else:
        with RayWorkerPeak(session) as peak:
            m = measure(cmd, ROOT, env)
        worker_peak, workers = peak.peak, len(peak.workers)
    if m.returncode:
        raise RuntimeError(f"{label} failed (exit {m.returncode}):\n{m.output[-3000:]}")
    row = {"run": label, "wall_s": round(m.wall_s, 2), "cpu_s": round(m.user_s + m.sys_s, 2),
           "records_per_s": round(records / m.wall_s) if records else None,
           "peak_rss_mb": round(m.maxrss_mb, 1), "ray_worker_peak_rss_mb": round(worker_peak / MB, 1),
           "ray_workers": workers, "load_before": [round(x, 2) for x in load],
           "load_after": [round(x, 2) for x in os.getloadavg()], "outputs_sha256": digest(out)}
    results.append(row)
    print(f"  {label:<34} {row['wall_s']:>7.2f} s  cpu {row['cpu_s']:>7.2f} s  load {row['load_before'][0]:.2f}",
          flush=True)
    return row


def show(result: dict[str, Any]) -> None:
    print(f"{result['records']} records, one cqia-jsonl category, {result['raw_mb']} MB raw; "
          f"{result['cpus']} cores; at {result['commit']}, {result['started']}")
    print(f"ray start --head (one node, {result['cpus']} CPUs, no dashboard): {result['ray_start_s']} s")
    print()
    print(f"{'run':<36}{'wall s':>8}{'records/s':>11}{'CPU s':>8}{'peak RSS MB':>13}{'Ray worker MB':>15}"
          f"{'load 1/5/15 before':>22}")
    print("-" * 113)
    for row in result["runs"]:
        load = "/".join(f"{x:.1f}" for x in row["load_before"])
        rate = f"{row['records_per_s']:>11}" if row["records_per_s"] else f"{'':>11}"
        worker = f"{row['ray_worker_peak_rss_mb']:>15.1f}" if row["ray_workers"] else f"{'':>15}"
        print(f"{row['run']:<36}{row['wall_s']:>8.2f}{rate}{row['cpu_s']:>8.2f}{row['peak_rss_mb']:>13.1f}"
              f"{worker}{load:>22}")
    print()
    print("every run wrote the same bytes:", result["same_bytes"])


def run(records: int, runs: int, cpus: int, out: Path) -> dict[str, Any]:
    import subprocess

    from cqia.gates import gx_server
    from tests import sandbox

    work = out / f"ray-{records}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"generating {records} records under {work} (kept for the next run) ...", flush=True)
    params, name, raw_bytes = prepare(work, records)
    small_work = out / "ray-2000"
    small_work.mkdir(parents=True, exist_ok=True)
    small_params, small_name, _ = prepare(small_work, 2000)

    server_dir = Path(tempfile.mkdtemp(prefix="cqia-gx-bench-"))
    env = sandbox.isolated_env(work, "bench", PYTHONPATH=str(ROOT), CQIA_GX_SERVER_DIR=str(server_dir),
                               **sandbox.RAY_ENV)
    for knob in ("CQIA_EXECUTOR", "CQIA_WORKERS", "CQIA_CHUNK_BYTES", "RAY_ADDRESS"):
        env.pop(knob, None)
    results: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "records": records, "raw_mb": round(raw_bytes / MB, 1), "cpus": cpus,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": results}
    try:
        print("warming the Great Expectations server ...", flush=True)
        timed("warm-up (local, 2,000 records)", stage_cmd(small_work, small_params, small_name, work / "o-warm"),
              env, work / "o-warm", [])
        print("local ...", flush=True)
        for i in range(runs):
            timed(f"local, {cpus} workers (run {i + 1})", stage_cmd(work, params, name, work / "o-local"), env,
                  work / "o-local", results, records=records)
        timed("local, 1 process (CQIA_WORKERS=1)", stage_cmd(work, params, name, work / "o-local1"),
              {**env, "CQIA_WORKERS": "1"}, work / "o-local1", results, records=records)
        for i in range(2):
            timed(f"small: local (2,000 records) {i + 1}", stage_cmd(small_work, small_params, small_name,
                  work / "o-small-local"), env, work / "o-small-local", results)
        print("starting a Ray head ...", flush=True)
        with sandbox.ray_head(cpus=cpus, object_store_bytes=1_000_000_000) as head:
            result["ray_start_s"] = round(head.seconds, 2)
            print(f"  up in {head.seconds:.2f} s at {head.address}", flush=True)
            ray_env = {**env, "CQIA_EXECUTOR": "ray", "RAY_ADDRESS": head.address}
            for i in range(2):
                timed(f"small: ray (2,000 records) {i + 1}", stage_cmd(small_work, small_params, small_name,
                      work / "o-small-ray"), ray_env, work / "o-small-ray", results, session=head.session)
            for i in range(runs):
                timed(f"ray, one node of {cpus} CPUs (run {i + 1})", stage_cmd(work, params, name, work / "o-ray"),
                      ray_env, work / "o-ray", results, session=head.session, records=records)
    finally:
        gx_server.stop(server_dir)
        shutil.rmtree(server_dir, ignore_errors=True)
    big = {row["outputs_sha256"] for row in results if not row["run"].startswith("small")}
    small = {row["outputs_sha256"] for row in results if row["run"].startswith("small")}
    result["same_bytes"] = len(big) == 1 and len(small) == 1
    (work / "results.json").write_text(json.dumps(result, indent=1))
    for stale in work.glob("o-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if not result["same_bytes"]:
        raise RuntimeError(f"the runs wrote different bytes: {results}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ray_compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000, help="records of the category (default 200000)")
    ap.add_argument("--runs", type=int, default=2, help="timed runs of each executor (default 2)")
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)), help="CPUs of the Ray node")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--show", type=Path, help="print the table of a results.json again")
    args = ap.parse_args(argv)
    if args.show:
        show(json.loads(args.show.read_text()))
        return 0
    result = run(args.records, args.runs, args.cpus, args.out)
    print()
    show(result)
    print(f"\nresults: {args.out / f'ray-{args.records}' / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
