"""A full disk under the real processes: the category stage entry, `cqia export` and `cqia review export`
writing to a small tmpfs (issue 18, item 1).

Each test mounts a 1 MiB tmpfs (it needs root; it is skipped with the reason otherwise), fills it to a
chosen number of free bytes, and checks: exit 1, exactly one line on stderr naming the file, the free
space of the filesystem and the fix, no traceback, no file left; then, with the space freed, the rerun
completes with the bytes a run on an ordinary disk writes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_ecosystem import RECORDS, write_release
from test_review_cli import workdir  # noqa: F401  (a fixture: a category stage's outputs, built in-process)

from conftest import BIN, ROOT

pytestmark = pytest.mark.process

OUTPUTS = ("accepted.jsonl.zst", "lineage.jsonl.zst", "rejects.jsonl", "keys.parquet", "metrics.json")


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 1 MiB tmpfs mounted at tmp_path/mnt, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path, free: int) -> Path:
    """Leave `free` bytes free on the tmpfs at `mnt`; return the filler (delete it to free the space)."""
    filler = mnt / "filler"
    filler.unlink(missing_ok=True)
    filler.write_bytes(b"\0" * (shutil.disk_usage(mnt).free - free))
    return filler


def full_disk_line(mnt: Path, files: str, command: str, elsewhere: str = "") -> re.Pattern:
    return re.compile(rf"error: {re.escape(str(mnt))}/({files}): no space left on device "
                      rf"\([\d.]+ (B|KiB) free of 1\.0 MiB on {re.escape(str(mnt))}\); nothing was written\. "
                      rf"Free space on {re.escape(str(mnt))}{re.escape(elsewhere)} and rerun `{re.escape(command)}`\n")


def category_stage(out: Path) -> subprocess.CompletedProcess:
    """`category@zhihu` as dvc.yaml runs it, its outputs in `out`."""
    return subprocess.run(
        [sys.executable, "-m", "stages.category", "--category", "zhihu", "--params", "params.yaml",
         "--raw-dir", "data/raw/zhihu", "--reviews", "data/reviews/zhihu.jsonl",
         "--schema", "schemas/record.schema.json", "--suite", "expectations/default.json",
         *(a for name, flag in zip(OUTPUTS, ("--accepted", "--lineage", "--rejects", "--keys", "--metrics"))
           for a in (flag, str(out / name)))],
        cwd=ROOT, capture_output=True, text=True)


def test_the_category_stage_on_a_full_disk_says_so_in_one_line_and_the_rerun_completes(tmp_path, tmpfs):
    normal = category_stage(tmp_path / "normal")
    assert normal.returncode == 0, normal.stderr
    out = tmpfs / "zhihu"
    # 4 KiB free: the first file written fails; 36 KiB: one of the big ones fails after some of it was written
    for free in (4096, 36 << 10):
        filler = fill(tmpfs, free)
        proc = category_stage(out)
        assert proc.returncode == 1
        assert full_disk_line(tmpfs, "zhihu/(" + "|".join(map(re.escape, OUTPUTS)) + ")", "dvc repro").fullmatch(proc.stderr), \
            proc.stderr
        assert list(out.iterdir()) == []                      # no output, no temporary
    filler.unlink()
    proc = category_stage(out)
    assert proc.returncode == 0, proc.stderr
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tmp_path / "normal" / name).read_bytes(), name


@pytest.fixture
def release(tmp_path: Path) -> Path:
    registry = tmp_path / "registry"
    (registry / ".dvc").mkdir(parents=True)
    (registry / "dvc.yaml").write_text("stages: {}\n")
    write_release(registry / "data" / "release", {"zhihu": RECORDS[2:] * 200})
    return registry


def cqia(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "cqia"), *args], cwd=cwd, capture_output=True, text=True)


def test_cqia_export_to_a_full_disk_says_so_in_one_line_and_the_rerun_completes(release, tmpfs):
    assert cqia(release, "export", "--format", "sharegpt", "--out", "normal").returncode == 0
    filler = fill(tmpfs, 4096)
    args = ("export", "--format", "sharegpt", "--out", str(tmpfs / "export"))
    proc = cqia(release, *args)
    assert proc.returncode == 1
    assert full_disk_line(tmpfs, "export/coig_cqia_workspace_sharegpt.json", "cqia " + " ".join(args),
                          " (or pass --out a directory on another filesystem)").fullmatch(proc.stderr), proc.stderr
    assert list((tmpfs / "export").iterdir()) == []
    filler.unlink()
    assert cqia(release, *args).returncode == 0
    for name in ("coig_cqia_workspace_sharegpt.json", "dataset_info.json"):
        assert (tmpfs / "export" / name).read_bytes() == (release / "normal" / name).read_bytes()


def test_cqia_review_export_to_a_full_disk_says_so_in_one_line_and_the_rerun_completes(workdir, tmpfs):  # noqa: F811
    args = ("review", "export", "human_value", "--out", str(tmpfs / "review" / "human_value"))
    filler = fill(tmpfs, 0)
    proc = cqia(workdir, *args)
    assert proc.returncode == 1
    assert full_disk_line(tmpfs, r"review/human_value\.(jsonl|csv)", "cqia " + " ".join(args),
                          " (or pass --out a directory on another filesystem)").fullmatch(proc.stderr), proc.stderr
    assert list((tmpfs / "review").iterdir()) == []
    filler.unlink()
    proc = cqia(workdir, *args)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmpfs / "review").iterdir()) == ["human_value.csv", "human_value.jsonl"]
