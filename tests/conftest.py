"""Shared fixtures. End-to-end tests drive the real `dvc` and `git` CLIs in temp repos."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cqia.common.lineage import SCHEMA_FILE
from tests import sandbox

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Copied into a temporary repo: everything the pipeline needs, nothing it builds.
REPO_FILES = ("dvc.yaml", "params.yaml", "schemas", "expectations", "stages", "cqia", "data/raw", "data/reviews")


def remove_outputs(release: Path) -> None:
    """Delete a release's DVC outputs, keeping the .gitignore files git tracks there."""
    for path in sorted(release.rglob("*"), reverse=True):
        if path.is_file() and path.name != ".gitignore":
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


@functools.cache
def _lineage_validator():
    import jsonschema
    import orjson

    return jsonschema.Draft202012Validator(orjson.loads((ROOT / SCHEMA_FILE).read_bytes()))


def lineage_errors(entry: dict) -> list[str]:
    """Where a lineage line breaks schemas/lineage.schema.json (none: it is valid)."""
    return [f"{e.json_path}: {e.message}" for e in _lineage_validator().iter_errors(entry)]


def release_lineage(release: Path) -> list[dict]:
    """Every lineage line of a built release, category by category in manifest order; each
    line is checked against schemas/lineage.schema.json on the way."""
    import orjson

    manifest = orjson.loads((release / "manifest.json").read_bytes())
    lines = [orjson.loads(line) for name in manifest["categories"]
             for line in (release / "lineage" / name / "lineage.jsonl").read_bytes().splitlines()]
    for entry in lines:
        assert not lineage_errors(entry), (entry["id"], lineage_errors(entry))
    return lines


def release_records_bytes(release: Path) -> bytes:
    """Every released record's line in release order: the categories' train.jsonl in manifest order."""
    import orjson

    manifest = orjson.loads((release / "manifest.json").read_bytes())
    return b"".join((release / name / "train.jsonl").read_bytes() for name in manifest["categories"])


def as_registry(path: Path) -> Path:
    """Make `path` a directory the CLI takes for a registry (`dvc.yaml` and `.dvc/`), for fast
    tests that chdir into a hand-made tree; returns `path`."""
    (path / ".dvc").mkdir(parents=True, exist_ok=True)
    if not (path / "dvc.yaml").exists():
        (path / "dvc.yaml").write_text("stages: {}\n")
    return path


def isolated_env(tmp: Path) -> dict[str, str]:
    """Environment for dvc/git subprocesses: no analytics, caches and configs inside tmp."""
    # HOME too: the committed default remote lives under ~, keep it inside the test.
    return sandbox.isolated_env(tmp, "test", HOME=str(tmp / "home"), PYTHONPATH=str(ROOT))


class Repo:
    """A temporary git + DVC repository holding a copy of the registry's pipeline."""

    def __init__(self, path: Path, env: dict[str, str]):
        self.path = path
        self.env = env

    def run(self, *cmd: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
        # bounded: a command that hangs (a stalled socket) fails its test instead of the whole run
        proc = subprocess.run(cmd, cwd=cwd or self.path, env=self.env, capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "dvc"), *args, check=check)

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("git", *args, check=check)

    def cqia(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "cqia"), *args, check=check)

    def file(self, rel: str) -> Path:
        return self.path / rel


def make_repo(tmp: Path, files=REPO_FILES) -> Repo:
    repo_dir = tmp / "repo"
    repo_dir.mkdir()
    for rel in files:
        src = ROOT / rel
        dst = repo_dir / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (repo_dir / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    repo = Repo(repo_dir, isolated_env(tmp))
    repo.git("init", "-q", "-b", "main")
    repo.dvc("init", "-q")
    repo.dvc("config", "core.analytics", "false")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "init")
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def gx_server_dir():
    """The tests' own Great Expectations server directory (CQIA_GX_SERVER_DIR), not the user's.

    The gates of every test (and of the `dvc repro` they run) share one server per test
    process; it is stopped at the end. tests/test_gx_server.py gives each of its tests a
    directory of its own instead.
    """
    import tempfile

    from cqia.gates import gx_server

    directory = Path(tempfile.mkdtemp(prefix="cqia-gx-test-"))  # short: a socket path has at most 107 bytes
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CQIA_GX_SERVER_DIR", str(directory))
        yield directory
        gx_server.stop(directory)
    shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------- lanes

LANES = ("process", "e2e")


def pytest_collection_modifyitems(items):
    """A test in neither the process nor the e2e lane is in the unit lane."""
    for item in items:
        if not any(item.get_closest_marker(lane) for lane in LANES):
            item.add_marker(pytest.mark.unit)


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: no subprocess, no fork (the default lane; make test-fast)")


@pytest.fixture(autouse=True)
def _unit_lane_starts_no_process(request, monkeypatch):
    """The unit lane stays fast because nothing in it starts a process: a test that does fails here,
    naming the lane its file belongs in."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process: put its file in the process lane "
                             "(pytestmark = pytest.mark.process)")

    import os

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)


def mid_write(directory: Path, proc: subprocess.Popen, timeout: float = 120) -> list[Path]:
    """Wait until the stage in `proc` is writing: its three temporaries exist and the lineage one holds
    compressed bytes (zstd flushes a block at a time); then freeze it (SIGSTOP to its process group,
    or to `proc` alone when it leads none), so that it is still mid-write whatever the machine's load,
    and return the temporaries. The caller kills it (SIGKILL ends a stopped process). Fails if the
    stage ends first."""
    import os
    import signal

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        staged = sorted(directory.glob(".*.tmp"))
        if [p.name.split(".")[1] for p in staged] == ["accepted", "lineage", "rejects"] and staged[1].stat().st_size:
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGSTOP)
            else:
                proc.send_signal(signal.SIGSTOP)
            return staged
        time.sleep(0.005)
    raise AssertionError(f"the stage never was mid-write (exit {proc.poll()})")


def more_zhihu_records(repo, count: int) -> int:
    """Append `count` generated records to the zhihu sample (a stage that runs long enough to be caught
    mid-write); return how many raw records the category then has."""
    path = repo.file("data/raw/zhihu/train.jsonl")
    record = json.loads(path.read_bytes().splitlines()[0])
    lines = [json.dumps(dict(record, instruction=f"第{i}个问题：{record['instruction']}",
                             output=f"第{i}种回答。{record['output']}"), ensure_ascii=False) for i in range(count)]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return len(path.read_bytes().splitlines())
