"""A full disk (ENOSPC, or EDQUOT) while writing: one error naming the file, its filesystem's free space and
the fix, and no temporary left behind (issue 18, item 1).

These tests replace the raw file under a writer with one that fills up at a chosen byte; the process lane
(tests/test_disk_full_process.py) fills a real tmpfs under the stage entry and the `cqia` command.
"""

from __future__ import annotations

import errno
import pickle
import shutil
from collections import namedtuple
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_ecosystem import RECORDS, write_release

from conftest import as_registry
from cqia.common import errors, fileio
from cqia.common.errors import CqiaError, DiskFull, disk_full, human_bytes, no_space
from cqia.common.fileio import BUFFER, Staging, open_read

pytestmark = pytest.mark.unit

Usage = namedtuple("Usage", "total used free")


@pytest.fixture(autouse=True)
def fixed_space(monkeypatch):
    """Every filesystem is /data, 512 bytes free of 2 GiB: the messages can be pinned whole."""
    monkeypatch.setattr(errors, "mount_point", lambda path: "/data")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(2 << 30, (2 << 30) - 512, 512))


class FullAt:
    """A raw file that takes `room` bytes, then fails as a full disk does (errno 28, or pyarrow's text only)."""

    def __init__(self, raw, room: int, arrow_text: bool = False):
        self.raw, self.room, self.arrow_text = raw, room, arrow_text
        self.closed = False

    def _full(self) -> OSError:
        if self.arrow_text:   # what pyarrow raises from its own files: the C library's text, errno unset
            return OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
        return OSError(errno.ENOSPC, "No space left on device")

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.raw.write(data[:self.room])
            self.room = 0
            raise self._full()
        self.room -= len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.closed = True
        self.raw.close()


@pytest.fixture
def fill_at(monkeypatch):
    """fill_at({name: bytes}): files whose name is a key take that many bytes, then the disk is full."""
    real = fileio._raw_file

    def install(rooms: dict[str, int], arrow_text: bool = False):
        def raw_file(path, zstd):
            room = next((n for name, n in rooms.items() if Path(path).name.startswith(f".{name}.")
                         or Path(path).name == name), None)
            raw = real(path, zstd)
            return raw if room is None else FullAt(raw, room, arrow_text)
        monkeypatch.setattr(fileio, "_raw_file", raw_file)
    return install


def message(path: str, command: str = "dvc repro", elsewhere: str = "") -> str:
    return (f"{path}: no space left on device (512 B free of 2.0 GiB on /data); nothing was written. "
            f"Free space on /data{elsewhere} and rerun `{command}`")


@pytest.mark.parametrize("room", [0, 1, 4095, BUFFER - 1, BUFFER, 2 * BUFFER + 7])
@pytest.mark.parametrize("name", ["lineage.jsonl.zst", "rejects.jsonl"])
def test_a_write_that_fills_the_disk_at_any_byte_names_the_target_and_leaves_nothing(tmp_path, fill_at, room, name):
    fill_at({name: room})
    target = tmp_path / "out" / name
    with pytest.raises(DiskFull) as caught:
        with Staging() as staging, staging.open(target) as out:
            for i in range(3000):                               # ~3 MB: past the buffer, in pieces
                out.write(orjson.dumps({"n": i, "text": "长" * 330}) + b"\n")
    assert str(caught.value.rerun("dvc repro")) == message(str(target))
    assert list((tmp_path / "out").iterdir()) == []             # no temporary, no half-written target


def test_the_first_file_to_fill_the_disk_is_named_not_one_that_failed_while_closing(tmp_path, fill_at):
    # the accepted records fail first; closing the lineage and rejects on the way out fails as well
    fill_at({"accepted.jsonl.zst": 10, "lineage.jsonl.zst": 0, "rejects.jsonl": 0})
    out = tmp_path / "stage"
    with pytest.raises(CqiaError) as caught:
        with Staging() as staging, staging.open(out / "accepted.jsonl.zst") as acc, \
                staging.open(out / "lineage.jsonl.zst") as lin, staging.open(out / "rejects.jsonl") as rej:
            lin.write(b"x" * 100)
            rej.write(b"y" * 100)
            acc.write(b"z" * (BUFFER + 1))                      # past the buffer: written now, and fails
    assert str(disk_full(caught.value).rerun("dvc repro")) == message(str(out / "accepted.jsonl.zst"))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("arrow_text", [False, True])
def test_parquet_written_through_a_staged_file_names_the_parquet_file(tmp_path, fill_at, arrow_text):
    fill_at({"keys.parquet": 100}, arrow_text)
    table = pa.table({"id": [f"zhihu-{i:016x}" for i in range(50_000)]})
    target = tmp_path / "keys.parquet"
    with pytest.raises(DiskFull) as caught:
        with Staging() as staging, staging.open(target) as out:
            pq.write_table(table, out, compression="zstd")
    assert str(caught.value.rerun("dvc repro")) == message(str(target))
    assert list(tmp_path.iterdir()) == []


def test_files_in_a_staged_directory_are_named_by_their_final_path(tmp_path, fill_at):
    fill_at({"train.parquet": 0})
    release = tmp_path / "release" / "zhihu"
    with pytest.raises(DiskFull) as caught:
        with Staging() as staging:
            tmp = staging.directory(release)
            staging.write(tmp / "train.jsonl", b"{}\n")
            with staging.create(tmp / "train.parquet") as out:
                pq.write_table(pa.table({"a": list(range(1000))}), out)
    assert caught.value.path == str(release / "train.parquet")
    assert list((tmp_path / "release").iterdir()) == []


def test_a_library_writing_to_a_path_in_a_staged_directory_is_named_by_staging(tmp_path):
    # pyarrow writing to a path raises OSError with errno unset and no file name: the staged output is named
    release = tmp_path / "lineage" / "zhihu"
    with pytest.raises(DiskFull) as caught:
        with Staging() as staging:
            staging.directory(release)
            raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert str(caught.value.rerun("dvc repro")) == message(str(release))
    assert list((tmp_path / "lineage").iterdir()) == []
    with pytest.raises(DiskFull) as caught:
        with Staging() as staging:
            tmp = staging.directory(release)
            raise OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp / "index.parquet"))
    assert str(caught.value.rerun("dvc repro")) == message(str(release / "index.parquet")).replace(
        "no space left on device", "disk quota exceeded")


def test_other_os_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        with Staging() as staging:
            staging.path(tmp_path / "x")
            raise PermissionError(errno.EACCES, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_what_counts_as_a_full_disk():
    assert no_space(OSError(errno.ENOSPC, "x")) == errno.ENOSPC
    assert no_space(OSError(errno.EDQUOT, "x")) == errno.EDQUOT
    assert no_space(OSError("IOError: [errno 28] No space left on device")) == errno.ENOSPC
    assert no_space(OSError(errno.EIO, "Input/output error")) is None
    assert no_space(ValueError("No space left on device")) is None
    raw = OSError(errno.ENOSPC, "No space left on device", "/data/x.txt")
    assert str(disk_full(raw)) == ("/data/x.txt: no space left on device (512 B free of 2.0 GiB on /data). "
                                   "Free space on /data and run the command again")   # written by whom: unknown
    assert disk_full(ValueError("x")) is None


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
                                     (5 << 20, "5.0 MiB"), (int(3.25 * (1 << 30)), "3.2 GiB"), (2 << 40, "2.0 TiB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_a_disk_full_error_pickles_whole():
    error = DiskFull("/data/x", command="dvc repro", free=1, total=2, mount="/data")
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again)) == (DiskFull, str(error))


def test_the_real_compressed_writer_is_guarded(tmp_path, fill_at):
    fill_at({"a.jsonl.zst": 50})
    with pytest.raises(DiskFull):
        with Staging() as staging, staging.open(tmp_path / "a.jsonl.zst") as out:
            out.write(bytes(range(256)) * 20_000)
    assert list(tmp_path.iterdir()) == []
    with Staging() as staging, staging.open(tmp_path / "b.jsonl.zst") as out:   # what does fit reads back
        out.write(b"line\n" * 10)
    with open_read(tmp_path / "b.jsonl.zst") as handle:
        assert list(handle) == [b"line\n"] * 10


# --------------------------------------------------------------------------- the cqia command

@pytest.fixture
def release(tmp_path, monkeypatch):
    monkeypatch.chdir(as_registry(tmp_path))
    write_release(tmp_path / "data" / "release", {"zhihu": RECORDS[2:]})
    return tmp_path


def test_cqia_export_to_a_full_disk_is_one_line_naming_the_file_and_out(release, fill_at):
    fill_at({"coig_cqia_workspace_alpaca.json": 3})
    from cqia.cli import cli

    result = CliRunner().invoke(cli, ["export", "--format", "alpaca"])
    assert (result.exit_code, result.output) == (1, "error: " + message(
        "out/export/coig_cqia_workspace_alpaca.json", "cqia export --format alpaca",
        " (or pass --out a directory on another filesystem)") + "\n")
    assert list((release / "out" / "export").iterdir()) == []


def test_cqia_export_to_a_full_disk_with_json_is_one_json_object(release, fill_at):
    from cqia.cli import cli

    fill_at({"dataset_info.json": 0})
    result = CliRunner().invoke(cli, ["export", "--format", "alpaca", "--json"])
    assert result.exit_code == 1
    assert orjson.loads(result.output) == {
        "error": "no space left on device (512 B free of 2.0 GiB on /data); nothing was written",
        "where": "out/export/dataset_info.json",
        "fix": "Free space on /data (or pass --out a directory on another filesystem) and rerun "
               "`cqia export --format alpaca --json`"}
    assert list((release / "out" / "export").iterdir()) == []


def test_a_full_disk_no_writer_of_ours_met_is_one_line_naming_its_file(release, monkeypatch):
    # e.g. `cqia release` or `cqia category add` rewriting params.yaml in place: the file is named, and
    # "nothing was written" is not promised; a command without --out suggests none
    from cqia.cli import cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "params.yaml")
    monkeypatch.setattr("cqia.cli.release_metrics", full)
    result = CliRunner().invoke(cli, ["summary"])
    assert (result.exit_code, result.output) == (1, (
        "error: params.yaml: no space left on device (512 B free of 2.0 GiB on /data). "
        "Free space on /data and rerun `cqia summary`\n"))


def test_cqia_release_passes_on_the_stage_line_of_a_full_disk():
    # `cqia release` builds with `dvc repro` and quotes the failing stage's one line (cqia/registry/releases.py)
    from cqia.registry.releases import gate_failure

    line = message("data/stages/zhihu/keys.parquet")
    output = ["Running stage 'category@zhihu':", "> python -m stages.category --category zhihu ...",
              f"error: {line}",
              "ERROR: failed to reproduce 'category@zhihu': failed to run: python -m stages.category ..., "
              "exited with 1"]
    assert gate_failure(output) == f"stage category@zhihu: {line}"
