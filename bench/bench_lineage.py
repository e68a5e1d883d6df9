"""Benchmark: `cqia lineage` and `cqia diff` latency on large releases.

Writes two synthetic releases of N records each in 12 categories (per category
`<c>/train.jsonl`, `lineage/<c>/lineage.jsonl` and `lineage/<c>/index.parquet`,
through the same LineageWriter the publish stages use) into a temporary
git + DVC repository, tags them v0.1 and v0.2 (v0.2: 1% of records modified,
0.5% removed, 0.5% added), and times the real CLI:

    cqia lineage ID                 (workspace)
    cqia lineage ID --rev v0.2      (through DVC, no checkout; includes the scan of both tags)
    cqia diff v0.1 v0.2 --json      (through DVC)

    python bench/bench_lineage.py --n 1000000 [--keep DIR]

Targets (issue 4/7): lineage < 1 s and diff < 30 s at 1M records.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cqia.common import lineage as L  # noqa: E402
from cqia.common.fileio import dumps_line  # noqa: E402
from cqia.common.lineage import INDEX_FILE, LineageWriter, lineage_path, records_path  # noqa: E402

CATS = [f"cat{i:02d}" for i in range(12)]
WORDS = "数据质量指令微调中文问答模型训练评估社会心理法律环境教育科技历史文化经济医学".replace("", " ").split()


def text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(WORDS) for _ in range(n))


def record(i: int, version: int, rng: random.Random) -> tuple[str, dict, dict]:
    cat = CATS[i % len(CATS)]
    rid = f"{cat}-{hashlib.sha256(str(i).encode()).hexdigest()[:16]}"
    out = text(rng, 400)
    if version == 2 and i % 100 == 0:
        out += "（已修订）"
    rec = {"id": rid, "instruction": text(rng, 40), "input": "", "output": out,
           "task_type": {"major": ["问答"], "minor": ["知乎问答"]}, "domain": ["通用"], "metadata": "",
           "answer_from": "human", "human_verified": False, "copyright": "bench"}
    # the raw output had full-width letters: a normalize step, stored as its edits (lineage format 2)
    raw_out = "ＡＩ" + out[2:]
    steps = [L.parse_step("cqia-jsonl", "jsonl"), L.map_step([]),
             L.edit_step("normalize", "output", ["fullwidth_ascii"], raw_out, out), L.pass_step("rules"),
             L.pass_step("schema"), L.gate_step("default"), L.dedup_pass_step()]
    L.store_edits(steps, {"instruction": rec["instruction"], "input": "", "output": raw_out})
    lineage = {"id": rid, "status": "released", "category": cat,
               "source": {"file": f"data/raw/{cat}/train.jsonl", "md5": "0" * 32, "line": i // len(CATS) + 1},
               "raw": {"instruction": rec["instruction"], "output": raw_out}, "steps": steps}
    return rid, rec, lineage


def write_release(out: Path, n: int, version: int) -> list[str]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ids = []
    lo, hi = (0, n) if version == 1 else (n // 200, n + n // 200)  # v0.2 drops the first 0.5%, adds 0.5%
    counts = {}
    for c, cat in enumerate(CATS):
        (out / records_path(cat)).parent.mkdir(parents=True)
        (out / lineage_path(cat)).parent.mkdir(parents=True)
        with open(out / records_path(cat), "wb") as records, open(out / lineage_path(cat), "wb") as lin:
            writer = LineageWriter(lin)
            start = lo + (c - lo) % len(CATS)
            for i in range(start, hi, len(CATS)):
                rid, rec, lineage = record(i, version, random.Random(i))
                line = dumps_line(rec)
                at = (records.tell(), line)
                records.write(line)
                writer.write(lineage, at)
                ids.append(rid)
        writer.write_index(out / lineage_path(cat, INDEX_FILE))
        counts[cat] = {"raw": len(writer.ids), "released": len(writer.ids), "rejected": 0, "rejected_by_reason": {}}
    (out / "manifest.json").write_text(json.dumps({"version": f"v0.{version}", "released": hi - lo,
                                                   "categories": counts}))
    return ids


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def timed(cmd: list[str], cwd: Path, env: dict, repeat: int = 3) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        t = time.perf_counter()
        out = run(cmd, cwd, env).stdout
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--keep", type=Path, default=None, help="Build here and keep it (default: a temp dir).")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="cqia-bench-lineage-"))
    repo = base / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
               DVC_SITE_CACHE_DIR=str(base / "site-cache"), GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@x",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@x")
    dvc, cqia = str(bindir / "dvc"), str(bindir / "cqia")
    run(["git", "init", "-q"], repo, env)
    run([dvc, "init", "-q"], repo, env)
    (repo / "dvc.yaml").write_text("stages: {}\n")      # what `cqia` looks for to find a registry
    run([dvc, "config", "core.analytics", "false"], repo, env)
    run([dvc, "config", "cache.type", "hardlink,symlink"], repo, env)
    release = repo / "data/release"
    results = {"n": args.n}
    for version in (1, 2):
        t = time.perf_counter()
        ids = write_release(release, args.n, version)
        results[f"write_v0.{version}_s"] = round(time.perf_counter() - t, 2)
        run([dvc, "add", "-q", "data/release"], repo, env)
        run(["git", "add", "-A"], repo, env)
        run(["git", "commit", "-qm", f"v0.{version}"], repo, env)
        run(["git", "tag", f"v0.{version}"], repo, env)
    probe = ids[len(ids) // 2]
    results["lineage_workspace_s"], _ = timed([cqia, "lineage", probe, "--json"], repo, env)
    results["lineage_rev_s"], _ = timed([cqia, "lineage", probe, "--rev", "v0.2", "--json"], repo, env)
    results["diff_s"], out = timed([cqia, "diff", "v0.1", "v0.2", "--json"], repo, env, repeat=1)
    totals = json.loads(out)["totals"]
    results["diff_totals"] = totals
    size = sum(p.stat().st_size for p in release.rglob("*") if p.is_file())
    results["release_bytes"] = size
    print(json.dumps(results, indent=2))
    if not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
