"""The benchmark: the full pipeline against a bare orjson baseline, on synthetic data.

    python -m bench.run --records 10000            # `make bench`: a couple of minutes
    python -m bench.run --records 1000000          # `make bench N=1000000`: about 2 GB of raw data

In one run, on the same raw bytes (bench/generate.py, 12 source categories):

  baseline     read every raw file with orjson and write it back (one process; median of three)
  full         `dvc repro` from scratch: every stage with all its gates, exact and near-duplicate
               detection (params as the registry ships them: `neardup.enabled: true`)
  no-op        `dvc repro` again, nothing to do (three times; the median counts)
  incremental  one category's raw file gains 1% more records; `dvc repro` reruns that category
               and what depends on it
  exact only   `neardup.enabled: false`; `dvc repro` reruns every category stage (they no
               longer sketch MinHash signatures), dedup (exact duplicates only), the publish
               stages whose decisions changed, merge and report; the full run's category and
               dedup commands less this run's give near-duplicate throughput

`--clusters 0.3` generates the duplication-heavy corpus (bench/generate.py: 30% of the
records in near-duplicate clusters of 2-50 members); its files are named
`<records>-clusters0.3`.

It reports wall time, records/s, the ratio full/baseline, a per-stage breakdown
(the stage command's own time, and what DVC spends around it: hashing and
caching its outputs, writing dvc.lock) and peak RSS (the largest single
process, from wait4(2), or the Great Expectations server or one of its
children; the stages run one after another), and per kind of process (DVC,
each stage, the category stage's workers, the GX server, its gate runs) the
largest peak RSS the poller saw. Per stage, the process that ran
its gate (a child of the GX server) has its peak RSS and, apart, its peak USS:
the memory it does not share with the server. The suite has a GX server
directory of its own (CQIA_GX_SERVER_DIR), so the full run starts from no
server and its first gate run pays GX's import. Results go to
bench/out/results-<records>.json, DVC's time-stamped output to
bench/out/log-<records>-<run>.txt, and the table is printed.

The pipeline runs in a throw-away git + DVC repository under bench/out/ that
holds a copy of the registry's pipeline (dvc.yaml, stages/, cqia/, schemas/,
expectations/), a params.yaml with the generated categories and empty review
files. Other scripts reuse the pieces: `build_repo()` makes such a repository
and `measure()` runs a command and times it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.generate import CategorySpec, append_records, generate, plan  # noqa: E402
from tests import sandbox  # noqa: E402

OUT = ROOT / "bench" / "out"
BIN = Path(sys.executable).parent
PIPELINE_FILES = ("dvc.yaml", "schemas", "expectations", "stages", "cqia")
MB = 1024 * 1024

# Runs a command and writes its rusage (max RSS KB, user s, system s) to a file. The measured
# command is spawned from this small interpreter, not from the benchmark's own process: a
# child's ru_maxrss starts from the RSS of the process that forked it.
LAUNCHER = """import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{ru.ru_maxrss} {ru.ru_utime} {ru.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""

# The targets (stated for 1M records).
TARGET_RATIO = 10.0
TARGET_RSS_MB = 1024.0
TARGET_NOOP_S = 2.0
TARGET_INCREMENTAL_SHARE = 0.2


# --- the temporary repository -------------------------------------------------


def isolated_env(tmp: Path) -> dict[str, str]:
    """Environment for dvc/git: no analytics, DVC and git configuration kept inside tmp."""
    env = sandbox.isolated_env(tmp, "bench", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class BenchRepo:
    """A throw-away git + DVC repository holding the pipeline and generated raw data."""

    path: Path
    env: dict[str, str]
    specs: list[CategorySpec]
    generate_s: float = 0.0

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.path, env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode} in {self.path}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "dvc"), *args, check=check)

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("git", *args, check=check)

    @property
    def raw_dir(self) -> Path:
        return self.path / "data" / "raw"

    @property
    def records(self) -> int:
        return sum(s.records for s in self.specs)

    @property
    def raw_bytes(self) -> int:
        return sum(sum(s.files.values()) for s in self.specs)


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.allow_unicode = True
    return yaml


def write_params(source: Path, dest: Path, specs: list[CategorySpec], neardup: bool | None = None) -> None:
    """The project's params.yaml with its categories replaced by the generated ones.

    Near-duplicate detection (params `neardup`) stays as the project ships it
    unless `neardup` is given.
    """
    yaml = _yaml()
    params = yaml.load(source.read_text(encoding="utf-8"))
    params["categories"] = {s.name: s.params_entry() for s in specs}
    if "rule_defaults" in params:
        # The generated categories' rules are their own (bench/generate.py), as in the runs
        # BENCHMARKS.md compares: the project's defaults would add rules and change what is released.
        params["rule_defaults"] = {}
    if neardup is not None and isinstance(params.get("neardup"), dict):
        params["neardup"]["enabled"] = neardup
    with open(dest, "w", encoding="utf-8") as handle:
        yaml.dump(params, handle)


def set_neardup(params_file: Path, enabled: bool) -> bool:
    """Switch `neardup.enabled` in a bench repo's params; False if the pipeline has no such key."""
    yaml = _yaml()
    params = yaml.load(params_file.read_text(encoding="utf-8"))
    if not isinstance(params.get("neardup"), dict):
        return False
    params["neardup"]["enabled"] = enabled
    with open(params_file, "w", encoding="utf-8") as handle:
        yaml.dump(params, handle)
    return True


def build_repo(dest: Path, records: int, categories: int = 12, seed: int = 0, source: Path = ROOT,
               cache_type: str | None = None, clusters: float = 0.0) -> BenchRepo:
    """Make dest (replacing it) a git + DVC repo with the pipeline of `source` and generated raw data.

    `cache_type` sets DVC's `cache.type` (default: DVC's own, reflink,copy: a copy on ext4).
    `clusters` is the share of records in near-duplicate clusters (bench/generate.py; 0: none).

    Raw data is git-ignored in the bench repo (committing gigabytes to git
    would dominate the set-up); `dvc repro` reads it as a stage dependency
    either way.
    """
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    repo_dir = dest / "repo"
    repo_dir.mkdir(parents=True)
    for rel in PIPELINE_FILES:
        src, dst = source / rel, repo_dir / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", ".*.tmp"))
        else:
            shutil.copy2(src, dst)
    start = time.perf_counter()
    specs = generate(repo_dir / "data" / "raw", records, categories, seed, clusters)
    generate_s = time.perf_counter() - start
    (repo_dir / "data" / "reviews").mkdir(parents=True)
    for spec in specs:
        (repo_dir / "data" / "reviews" / f"{spec.name}.jsonl").touch()
    write_params(source / "params.yaml", repo_dir / "params.yaml", specs)
    (repo_dir / ".gitignore").write_text((source / ".gitignore").read_text() + "/data/raw/\n")
    repo = BenchRepo(repo_dir, isolated_env(dest), specs, generate_s)
    repo.git("init", "-q", "-b", "main")
    repo.dvc("init", "-q")
    repo.dvc("config", "core.analytics", "false")
    if cache_type:
        repo.dvc("config", "cache.type", cache_type)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "bench: pipeline and params")
    return repo


# --- measuring a command --------------------------------------------------------


@dataclass
class Proc:
    """One process seen while a command ran."""

    pid: int
    cmdline: list[str]
    first_seen: float                      # time.time() of the first and last poll that saw it
    last_seen: float
    peak_rss: int = 0
    ppid: int = 0
    role: str = ""                         # "gx server", "gx child" (one per gate run), else ""
    serves: int = 0                        # a gx child: the pid of the stage whose gate run it is
    peak_uss: int = 0                      # a GX process: its peak unique set size (memory no other process shares)


@dataclass
class Measured:
    cmd: list[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float                       # largest single process of the command or of the GX server's
    tree_rss_mb: float                     # largest sum over the tree (and the GX server's) at one poll
    lines: list[tuple[float, str]]          # (seconds since start, output line)
    procs: list[Proc] = field(default_factory=list)
    started: float = 0.0
    gx_server_started: bool = False        # a GX server started during the command (none was running)

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def as_dict(self) -> dict[str, Any]:
        servers = [p for p in self.procs if p.role == "gx server"]
        return {"cmd": " ".join(self.cmd), "returncode": self.returncode, "wall_s": round(self.wall_s, 3),
                "user_s": round(self.user_s, 3), "sys_s": round(self.sys_s, 3),
                "peak_rss_mb": round(self.maxrss_mb, 1), "peak_tree_rss_mb": round(self.tree_rss_mb, 1),
                "gx_server": {"started": self.gx_server_started,
                              "peak_rss_mb": round(max((p.peak_rss for p in servers), default=0) / MB, 1)}}


def gx_server_pids(directory: Path | None) -> set[int]:
    """The pids in the GX server directory's pid files (cqia/gates/gx_server.py)."""
    pids = set()
    for path in directory.glob("gx-*.pid") if directory else ():
        try:
            pids.add(int(path.read_text()))
        except (OSError, ValueError):
            continue
    return pids


def measure(cmd: list[str], cwd: Path, env: dict[str, str], poll_s: float = 0.05) -> Measured:
    """Run cmd; return wall time, CPU time, peak RSS, its output lines (time-stamped) and its processes.

    Peak RSS of the largest process comes from wait4(2) in a small launcher
    (the kernel keeps the maximum over the command and every descendant it
    waited for); a poller (psutil) adds each process's own peak and lifetime,
    so that stages can be told apart. The Great Expectations server of
    env's CQIA_GX_SERVER_DIR and its children (one per gate run) are detached,
    not the command's descendants: the poller finds them by the server's pid
    file, and their peaks count in the largest process too.
    """
    import tempfile

    import psutil

    with tempfile.NamedTemporaryFile(prefix="bench-rusage-", suffix=".txt", delete=False) as handle:
        usage_file = Path(handle.name)
    started = time.time()
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(usage_file), *cmd], cwd=cwd, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    procs: dict[int, Proc] = {}
    tree_peak = 0
    done = threading.Event()
    gx_dir = Path(env["CQIA_GX_SERVER_DIR"]) if env.get("CQIA_GX_SERVER_DIR") else None
    servers_before = {pid for pid in gx_server_pids(gx_dir) if psutil.pid_exists(pid)}

    def gx_members() -> tuple[set[int], list]:
        servers, members = gx_server_pids(gx_dir), []
        for pid in servers:
            try:
                server = psutil.Process(pid)
                members += [server, *server.children()]
            except psutil.Error:
                continue
        return servers, members

    def poller() -> None:
        nonlocal tree_peak
        try:
            root = psutil.Process(child.pid)
        except psutil.Error:
            return
        while not done.is_set():
            now = time.time()
            total = 0
            try:
                members = root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            except psutil.Error:
                members = []
            servers, gx = gx_members()
            members += [m for m in gx if m.pid not in {t.pid for t in members}]
            for member in members:
                try:
                    rss = member.memory_info().rss
                    seen = procs.get(member.pid)
                    if seen is None:
                        seen = procs[member.pid] = Proc(member.pid, member.cmdline(), now, now, ppid=member.ppid())
                    elif seen.last_seen - seen.first_seen < 1.0:
                        # a process first seen between fork and exec has its parent's command line
                        # (a stage's Great Expectations helper is one): read it again
                        seen.cmdline = member.cmdline()
                    if member.pid in servers:
                        seen.role = "gx server"
                    elif seen.ppid in servers and not seen.serves:
                        # the server's child names itself after the stage it serves once it has forked
                        name = member.name()
                        seen.role = "gx child"
                        seen.serves = int(name.split(":")[1]) if name.startswith("cqia-gx:") else 0
                    if seen.role or "cqia.gates.gx_worker import serve" in " ".join(seen.cmdline):
                        seen.peak_uss = max(seen.peak_uss, member.memory_full_info().uss)
                    seen.last_seen = now
                    seen.peak_rss = max(seen.peak_rss, rss)
                    if member.pid not in servers_before:   # a server already running is not this command's
                        total += rss
                except (psutil.Error, ValueError):
                    continue
            tree_peak = max(tree_peak, total)
            done.wait(poll_s)

    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    lines = []
    assert child.stdout is not None
    for raw in child.stdout:
        lines.append((time.perf_counter() - t0, raw.decode("utf-8", "replace").rstrip("\n")))
    child.wait()
    wall = time.perf_counter() - t0
    done.set()
    thread.join()
    try:
        maxrss_kb, user_s, sys_s = (float(x) for x in usage_file.read_text().split())
    except (OSError, ValueError):
        maxrss_kb = user_s = sys_s = float("nan")
    usage_file.unlink(missing_ok=True)
    gx_peak = max((p.peak_rss for p in procs.values() if p.role and p.pid not in servers_before), default=0)
    return Measured(cmd=list(cmd), returncode=child.returncode, wall_s=wall, user_s=user_s,
                    sys_s=sys_s, maxrss_mb=max(maxrss_kb / 1024, gx_peak / MB), tree_rss_mb=tree_peak / MB,
                    lines=lines, procs=sorted(procs.values(), key=lambda p: p.first_seen), started=started,
                    gx_server_started=any(p.role == "gx server" and p.pid not in servers_before
                                          for p in procs.values()))


def ran_stages(m: Measured) -> list[str]:
    return [line.split("'")[1] for _, line in m.lines if line.startswith("Running stage '")]


def stage_of(cmdline: list[str]) -> str | None:
    """The DVC stage a `python -m stages.<module>` process runs ('category@<name>', 'merge', ...), else None."""
    if "-m" not in cmdline[:-1]:
        return None
    module = cmdline[cmdline.index("-m") + 1]
    if not module.startswith("stages."):
        return None
    if module in ("stages.category", "stages.publish") and "--category" in cmdline[:-1]:
        return f"{module.removeprefix('stages.')}@{cmdline[cmdline.index('--category') + 1]}"
    return module.removeprefix("stages.")


def breakdown(m: Measured) -> list[dict[str, Any]]:
    """Per stage: the command's own time and peak RSS, and DVC's time around it.

    A stage's span runs from DVC's "Running stage" line to the next one (or
    to the end); what the command does not spend of it is DVC's: hashing and
    caching the outputs, writing dvc.lock, checking the next stage. The time
    before the first stage is DVC starting and checking what changed. A
    stage's helper peak is that of the process that ran its Great Expectations
    gate; a category stage's workers (cqia/ingest/parallel.py) are neither stages nor
    helpers.
    """
    starts = [(at, line.split("'")[1]) for at, line in m.lines if line.startswith("Running stage '")]
    spans = {name: (at, starts[i + 1][0] if i + 1 < len(starts) else m.wall_s)
             for i, (at, name) in enumerate(starts)}
    rows = []
    # a stage process's pid -> the peak RSS (and USS) of the processes that ran its gate: its
    # helper processes (CQIA_GX_SERVER=0), or the GX server's children that served it
    helpers: dict[int, int] = {}
    helpers_own: dict[int, int] = {}
    stage_pids = {proc.pid for proc in m.procs if stage_of(proc.cmdline)}
    for proc in m.procs:
        if proc.role == "gx server" or (proc.ppid in stage_pids and stage_of(proc.cmdline)):
            continue                     # the server, or a category stage's worker (forked with its command line)
        owner = proc.serves or proc.ppid
        helpers[owner] = max(helpers.get(owner, 0), proc.peak_rss)
        helpers_own[owner] = max(helpers_own.get(owner, 0), proc.peak_uss)
    for proc in m.procs:
        name = stage_of(proc.cmdline)
        if name is None or proc.ppid in stage_pids:     # a category stage's worker, forked with its command line
            continue
        command_s = max(0.0, proc.last_seen - proc.first_seen)
        begin, end = spans.get(name, (0.0, command_s))
        rows.append({"stage": name, "command_s": round(command_s, 2),
                     "dvc_s": round(max(0.0, end - begin - command_s), 2),
                     "peak_rss_mb": round(proc.peak_rss / MB, 1),
                     "helper_peak_rss_mb": round(helpers.get(proc.pid, 0) / MB, 1),
                     "helper_peak_uss_mb": round(helpers_own.get(proc.pid, 0) / MB, 1)})
    if starts:
        rows.insert(0, {"stage": "dvc: start, status", "command_s": 0.0, "dvc_s": round(starts[0][0], 2),
                        "peak_rss_mb": None})
    return rows


# --- the baseline ---------------------------------------------------------------


def baseline(raw_dir: Path, out_dir: Path) -> int:
    """Read every raw file under raw_dir with orjson and write it back under out_dir; return records."""
    records = 0
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
        target = out_dir / path.relative_to(raw_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as src, open(target, "wb") as dst:
            head = src.read(64)
            src.seek(0)
            if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
                items = orjson.loads(src.read().removeprefix(b"\xef\xbb\xbf"))
                records += len(items)
                dst.write(orjson.dumps(items))
                continue
            for line in src:
                if not line.strip():
                    continue
                records += 1
                try:
                    dst.write(orjson.dumps(orjson.loads(line), option=orjson.OPT_APPEND_NEWLINE))
                except orjson.JSONDecodeError:
                    dst.write(line)
    return records


# --- the suite ------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    except OSError:
        mem = ""
    versions = {}
    for dist in ("dvc", "great_expectations", "orjson", "pyarrow", "pandas"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "free_h": mem, "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions}


def source_state(source: Path = ROOT) -> dict[str, Any]:
    """Which code was measured: the commit and the files changed since (others edit in parallel)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=source, capture_output=True, text=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--", *PIPELINE_FILES, "params.yaml").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted_pipeline_files": changed}


def pick_incremental(specs: list[CategorySpec]) -> CategorySpec:
    """The median-sized JSON Lines category: the one whose raw file the incremental run changes."""
    jsonl = sorted((s for s in specs if s.format != "coig-human-value"), key=lambda s: s.records)
    return jsonl[len(jsonl) // 2]


def run_suite(records: int, categories: int = 12, seed: int = 0, out: Path = OUT, noops: int = 3,
              baselines: int = 3, keep: bool = False, log=print, cache_type: str | None = None,
              clusters: float = 0.0) -> dict[str, Any]:
    import tempfile

    from cqia.gates import gx_server

    plan(records, categories, seed)          # a bad size fails here, before anything is written
    # A Great Expectations server directory of this run's own, never the user's. Every timed `dvc repro`
    # starts from no server (the last one is stopped first), so its first gate run pays GX's import as on
    # a fresh machine, and full, incremental and exact-only compare like with like.
    server_dir = Path(tempfile.mkdtemp(prefix="cqia-gx-bench-"))
    try:
        return _run_suite(records, categories, seed, out, noops, baselines, keep, log, server_dir, cache_type,
                          clusters)
    finally:
        gx_server.stop(server_dir)
        shutil.rmtree(server_dir, ignore_errors=True)


def run_name(records: int, cache_type: str | None, clusters: float = 0.0) -> str:
    """What a run's files are named by: `1000000`, `1000000-hardlink` with a cache type set,
    `1000000-clusters0.3` for the duplication-heavy corpus."""
    name = f"{records}-{cache_type.replace(',', '-')}" if cache_type else str(records)
    return f"{name}-clusters{clusters:g}" if clusters else name


def _run_suite(records: int, categories: int, seed: int, out: Path, noops: int, baselines: int, keep: bool,
               log, server_dir: Path, cache_type: str | None, clusters: float = 0.0) -> dict[str, Any]:
    from cqia.gates import gx_server

    load_before = os.getloadavg()
    name = run_name(records, cache_type, clusters)
    work = out / f"repo-{name}"
    log(f"generating {records} records in {categories} categories (seed {seed}, clusters {clusters:g}) under {work} ...")
    repo = build_repo(work, records, categories, seed, cache_type=cache_type, clusters=clusters)
    repo.env["CQIA_GX_SERVER_DIR"] = str(server_dir)
    log(f"  {repo.raw_bytes / MB:.1f} MB raw in {repo.generate_s:.1f} s")

    log(f"baseline: orjson read + write of the raw files x{baselines} ...")
    base_runs = []
    for _ in range(baselines):
        os.sync()          # every timed run starts with no writes of an earlier step pending
        base_runs.append(measure([sys.executable, "-m", "bench.run", "baseline", "--raw-dir", str(repo.raw_dir),
                                  "--out", str(work / "baseline")], ROOT, repo.env))
        if base_runs[-1].returncode:
            raise RuntimeError(f"baseline failed:\n{base_runs[-1].output}")
        shutil.rmtree(work / "baseline", ignore_errors=True)
    base = sorted(base_runs, key=lambda m: m.wall_s)[len(base_runs) // 2]

    log("full: dvc repro ...")
    os.sync()
    gx_server.stop(server_dir)
    full = measure([str(BIN / "dvc"), "repro"], repo.path, repo.env)
    save_log(out / f"log-{name}-full.txt", full)
    if full.returncode:
        raise RuntimeError(f"dvc repro failed (exit {full.returncode}):\n{full.output[-4000:]}")
    manifest = orjson.loads((repo.path / "data" / "release" / "manifest.json").read_bytes())

    log(f"no-op: dvc repro x{noops} ...")
    os.sync()
    gx_server.stop(server_dir)
    noop_runs = [measure([str(BIN / "dvc"), "repro"], repo.path, repo.env) for _ in range(noops)]
    for m in noop_runs:
        if m.returncode or ran_stages(m):
            raise RuntimeError(f"the no-op dvc repro ran {ran_stages(m)} (exit {m.returncode}):\n{m.output}")

    changed = pick_incremental(repo.specs)
    added = max(10, changed.records // 100)
    log(f"incremental: {added} records appended to {changed.name}, dvc repro ...")
    append_records(changed, repo.raw_dir / changed.name, added, seed=seed * 1000 + 999)
    os.sync()
    gx_server.stop(server_dir)
    inc = measure([str(BIN / "dvc"), "repro"], repo.path, repo.env)
    save_log(out / f"log-{name}-incremental.txt", inc)
    if inc.returncode:
        raise RuntimeError(f"incremental dvc repro failed:\n{inc.output[-4000:]}")

    # Old versions of data/release in the DVC cache are dropped between runs (untimed): at 1M
    # records each version is about 9 GB.
    repo.dvc("gc", "--workspace", "--force", "-q")
    exact = None
    if set_neardup(repo.path / "params.yaml", False):
        log("exact only: neardup.enabled set to false, dvc repro (reruns category stages, dedup, ...) ...")
        os.sync()
        gx_server.stop(server_dir)
        exact = measure([str(BIN / "dvc"), "repro"], repo.path, repo.env)
        save_log(out / f"log-{name}-exact.txt", exact)
        if exact.returncode or "dedup" not in ran_stages(exact):
            raise RuntimeError(f"the exact-only dvc repro ran {ran_stages(exact)} (exit {exact.returncode}):\n"
                               f"{exact.output[-4000:]}")

    disk = {name: _du(repo.path / rel) for name, rel in
            (("raw", "data/raw"), ("stages", "data/stages"), ("release", "data/release"), ("dvc_cache", ".dvc/cache"))}
    noop_s = statistics.median(m.wall_s for m in noop_runs)
    # every process of every timed run, detached GX processes included
    peak_mb = max(m.maxrss_mb for m in (full, inc, *noop_runs, *([exact] if exact else [])))
    results = {
        "records": repo.records,
        "categories": categories,
        "seed": seed,
        "raw_mb": round(repo.raw_bytes / MB, 1),
        "dvc_cache_type": cache_type or "DVC's default (reflink,copy)",
        "clusters": clusters,
        "released": manifest["released"],
        "generated": [s.summary() for s in repo.specs],
        "generate_s": round(repo.generate_s, 2),
        "baseline": {**base.as_dict(), "records_per_s": round(repo.records / base.wall_s),
                     "runs_s": [round(m.wall_s, 3) for m in base_runs]},
        "full": {**full.as_dict(), "records_per_s": round(repo.records / full.wall_s),
                 "ratio_to_baseline": round(full.wall_s / base.wall_s, 2), "ran": ran_stages(full),
                 "stages": breakdown(full), "processes": process_peaks(full)},
        "noop": {"runs_s": [round(m.wall_s, 3) for m in noop_runs], "median_s": round(noop_s, 3),
                 "peak_rss_mb": round(max(m.maxrss_mb for m in noop_runs), 1)},
        "incremental": {**inc.as_dict(), "changed_category": changed.name, "records_added": added,
                        "ran": ran_stages(inc), "share_of_full": round(inc.wall_s / full.wall_s, 3),
                        "stages": breakdown(inc)},
        "exact_only": _exact_only_results(full, exact, repo.records),
        "disk_mb": {k: round(v / MB, 1) for k, v in disk.items()},
        "targets": {
            "full_over_baseline_at_most_10x": {"value": round(full.wall_s / base.wall_s, 2), "target": TARGET_RATIO,
                                               "met": full.wall_s / base.wall_s <= TARGET_RATIO},
            "peak_rss_at_most_1GB": {"value_mb": round(peak_mb, 1), "target_mb": TARGET_RSS_MB,
                                     "met": peak_mb <= TARGET_RSS_MB},
            "noop_at_most_2s": {"value_s": round(noop_s, 3), "target_s": TARGET_NOOP_S, "met": noop_s <= TARGET_NOOP_S},
            "incremental_at_most_a_fifth": {"value": round(inc.wall_s / full.wall_s, 3),
                                            "target": TARGET_INCREMENTAL_SHARE,
                                            "met": inc.wall_s / full.wall_s <= TARGET_INCREMENTAL_SHARE},
        },
        "machine": machine(),
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "source": source_state(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{name}.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _exact_only_results(near: Measured, exact: Measured | None, records: int) -> dict[str, Any] | None:
    """The exact-only run, and the full run's category and dedup commands (near-duplicate detection on)
    against its own: the extra time is what sketching and matching cost.

    The inputs differ by the incremental run's 1% in one category, which the comparison ignores.
    """
    if exact is None:
        return None

    def sketching(m: Measured) -> float:
        return sum(r["command_s"] for r in breakdown(m) if r["stage"].startswith("category@") or r["stage"] == "dedup")

    on, off = sketching(near), sketching(exact)
    extra = on - off
    return {**exact.as_dict(), "ran": ran_stages(exact), "category_and_dedup_on_s": round(on, 2),
            "category_and_dedup_off_s": round(off, 2), "extra_s": round(extra, 2),
            "neardup_records_per_s": round(records / extra) if extra > 0 else None,
            "processes": process_peaks(exact)}


def process_kind(proc: Proc, stage_pids: set[int]) -> str:
    """What a process is, for the peak-RSS-per-process table: a stage, a worker, a GX process, DVC."""
    name = stage_of(proc.cmdline)
    if proc.role == "gx server":
        return "GX server"
    if proc.role == "gx child" or "cqia.gates.gx_worker import serve" in " ".join(proc.cmdline):
        return "GX gate run (server's child)"
    if name is not None:
        return f"{name.split('@')[0]}@ worker" if proc.ppid in stage_pids else name
    if any(Path(arg).name == "dvc" for arg in proc.cmdline[:2]):
        return "dvc"
    return "other: " + " ".join(Path(a).name if i == 0 else a for i, a in enumerate(proc.cmdline[:3]))[:60]


def process_peaks(m: Measured) -> dict[str, dict[str, Any]]:
    """Per kind of process (process_kind), the largest peak RSS the poller saw and how many there were.

    The poller samples every 50 ms: a process's peak between two polls is missed (wait4's
    peak, `peak_rss_mb` of the run, is exact for the command's own processes).
    """
    stage_pids = {proc.pid for proc in m.procs if stage_of(proc.cmdline)}
    out: dict[str, dict[str, Any]] = {}
    for proc in m.procs:
        kind = process_kind(proc, stage_pids)
        row = out.setdefault(kind, {"processes": 0, "peak_rss_mb": 0.0})
        row["processes"] += 1
        row["peak_rss_mb"] = max(row["peak_rss_mb"], round(proc.peak_rss / MB, 1))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["peak_rss_mb"]))


def save_log(path: Path, m: Measured) -> None:
    """The command's output with each line's time since start, then the processes it ran."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"$ {' '.join(m.cmd)}   # exit {m.returncode}, {m.wall_s:.2f} s"]
    lines += [f"{at:9.2f}  {line}" for at, line in m.lines]
    lines.append("\nprocesses (first seen, last seen: seconds since start; peak RSS MB; command line):")
    lines += [f"{p.first_seen - m.started:9.2f} {p.last_seen - m.started:9.2f} {p.peak_rss / MB:8.1f}  "
              f"{' '.join(p.cmdline)[:160]}" for p in m.procs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def table(results: dict[str, Any]) -> str:
    """The results as a plain-text table (also the rows BENCHMARKS.md shows)."""
    n = results["records"]
    base, full, inc, noop = results["baseline"], results["full"], results["incremental"], results["noop"]
    rows = [
        (f"baseline: orjson read + write (median of {len(base.get('runs_s', [0]))})", base["wall_s"],
         base["records_per_s"], base["peak_rss_mb"], ", ".join(str(s) for s in base.get("runs_s", []))),
        ("full dvc repro (all gates, near-dup on)", full["wall_s"], full["records_per_s"], full["peak_rss_mb"],
         f"{full['ratio_to_baseline']}x baseline"),
        (f"no-op dvc repro (median of {len(noop['runs_s'])})", noop["median_s"], None, noop["peak_rss_mb"],
         ", ".join(f"{s}" for s in noop["runs_s"])),
        (f"incremental: {inc['records_added']} records added to {inc['changed_category']}", inc["wall_s"], None,
         inc["peak_rss_mb"], f"{inc['share_of_full']} of full; ran {', '.join(inc['ran'])}"),
    ]
    exact = results.get("exact_only")
    if exact:
        rows.append(("exact only (near-dup off): dvc repro", exact["wall_s"], exact["neardup_records_per_s"],
                     exact["peak_rss_mb"],
                     f"category + dedup commands {exact['category_and_dedup_on_s']} s near-dup on vs "
                     f"{exact['category_and_dedup_off_s']} s off: {exact['extra_s']:+} s; records/s of the extra time"))
    head = (f"{n} records, {results['categories']} categories, {results['raw_mb']} MB raw, {results['released']} released"
            f"; DVC cache.type: {results.get('dvc_cache_type', 'default')}")
    lines = [head, "", f"{'run':<52} {'wall s':>8} {'records/s':>10} {'peak RSS MB':>12}  note", "-" * 100]
    for name, wall, rate, rss, note in rows:
        lines.append(f"{name:<52} {wall:>8.2f} {rate if rate is not None else '':>10} {rss:>12.1f}  {note}")
    lines += ["", f"{'stage (full run)':<28} {'records':>8} {'command s':>10} {'dvc s':>7} "
                  f"{'records/s':>10} {'peak RSS MB':>12} {'GX helper MB':>13} {'GX own MB':>10}", "-" * 107]
    sizes = {f"{kind}@{g['name']}": g["records"] for g in results["generated"] for kind in ("category", "publish")}
    for row in full["stages"]:
        if row["peak_rss_mb"] is None:
            lines.append(f"{row['stage']:<28} {'':>8} {'':>10} {row['dvc_s']:>7.2f}")
            continue
        count = sizes.get(row["stage"], n)
        rate = round(count / row["command_s"]) if row["command_s"] else 0
        helper, own = row.get("helper_peak_rss_mb") or "", row.get("helper_peak_uss_mb") or ""
        lines.append(f"{row['stage']:<28} {count:>8} {row['command_s']:>10.2f} {row['dvc_s']:>7.2f} "
                     f"{rate:>10} {row['peak_rss_mb']:>12.1f} {helper:>13} {own:>10}")
    lines.append(f"{'sum of stage commands':<28} {'':>8} {sum(r['command_s'] for r in full['stages']):>10.2f} "
                 f"{sum(r['dvc_s'] for r in full['stages']):>7.2f}")
    server = full.get("gx_server") or {}
    if server.get("peak_rss_mb"):
        lines.append(f"GX server: {'started by the first gate run' if server['started'] else 'already running'}, "
                     f"peak RSS {server['peak_rss_mb']} MB. A gate run is its child: GX helper MB is the child's "
                     "RSS, counting the pages it shares with the server; GX own MB is its USS, what it adds.")
    if full.get("processes"):
        lines += ["", f"{'process (full run; every one, detached GX processes too)':<60} {'count':>6} {'peak RSS MB':>12}",
                  "-" * 80]
        lines += [f"{kind:<60} {row['processes']:>6} {row['peak_rss_mb']:>12.1f}"
                  for kind, row in full["processes"].items()]
    lines += ["", "target (the issue's, stated for 1M records)       value      met"]
    for name, t in results["targets"].items():
        value = next(v for k, v in t.items() if k.startswith("value"))
        lines.append(f"  {name:<46} {value:>8}  {'yes' if t['met'] else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command")
    ap.add_argument("--records", type=int, default=10_000, help="raw records in all (default 10000)")
    ap.add_argument("--categories", type=int, default=12, help="source categories (default 12)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT, help="where the repo and results go (default bench/out)")
    ap.add_argument("--keep", action="store_true", help="keep the bench repo (bench/out/repo-<records>/repo)")
    ap.add_argument("--cache-type", metavar="TYPE",
                    help="DVC cache.type in the bench repo, e.g. hardlink (default: DVC's own, a copy on ext4); "
                         "files are then named <records>-<type>")
    ap.add_argument("--clusters", type=float, default=0.0, metavar="SHARE",
                    help="share of records in near-duplicate clusters of 2-50 members (bench/generate.py; "
                         "0.3: the duplication-heavy corpus); files are then named <records>-clusters<SHARE>")
    ap.add_argument("--show", type=Path, metavar="RESULTS_JSON", help="print the table of a results file and exit")
    base = sub.add_parser("baseline", help="the baseline alone: orjson read + write of a raw directory")
    base.add_argument("--raw-dir", type=Path, required=True)
    base.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.command == "baseline":
        print(f"{baseline(args.raw_dir, args.out)} records")
        return 0
    if args.show:
        print(table(orjson.loads(args.show.read_bytes())))
        return 0
    try:
        results = run_suite(args.records, args.categories, args.seed, args.out, keep=args.keep,
                            cache_type=args.cache_type, clusters=args.clusters)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(table(results))
    print(f"\nresults: {args.out / f'results-{run_name(args.records, args.cache_type, args.clusters)}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
