"""File I/O shared by the stages: atomic outputs, JSON Lines, hashes.

Outputs appear whole or not at all: every writer writes to a temporary file
next to its target and renames it into place only when the stage commits.

A file whose name ends in `.zst` is written and read zstd-compressed (Arrow's
codec, level 1, ~760 MB/s on this project's lineage; a quarter of the bytes):
the big intermediates between stages, which DVC would otherwise hash and copy
into its cache at full size.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import orjson

from cqia.common.errors import CqiaError, DiskFull, no_space

JSONL_OPTS = orjson.OPT_APPEND_NEWLINE
# A JSON Lines file with nothing in it (no review decisions, no dedup decisions): one blank line,
# which every reader here skips, not zero bytes, for which DVC prints "WARNING: '<file>' is empty."
# at every run of a stage that depends on the file.
EMPTY_JSONL = b"\n"


def dumps_line(obj: Any) -> bytes:
    """One JSON Lines line, UTF-8, "\\n"-terminated, non-ASCII kept as is."""
    return orjson.dumps(obj, option=JSONL_OPTS)


def dumps_canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace. Used for ids and hashes."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def dumps_pretty(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


ZSTD_SUFFIX = ".zst"
BUFFER = 1 << 20


def compressed(path: str | Path) -> bool:
    return Path(path).suffix == ZSTD_SUFFIX


@contextmanager
def open_read(path: str | Path) -> Iterator[Any]:
    """A binary file for reading, decompressed if its name ends in `.zst`; iterating it yields lines."""
    if not compressed(path):
        with open(path, "rb") as handle:
            yield handle
        return
    import pyarrow as pa

    with io.BufferedReader(pa.input_stream(str(path), compression="zstd"), BUFFER) as handle:
        yield _Lines(handle, str(path))


class _Lines:
    """The lines of a compressed file; a damaged one is a one-line error naming it."""

    def __init__(self, handle: io.BufferedReader, path: str):
        self._handle, self._path = handle, path

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._handle
        except OSError as exc:
            raise CqiaError(f"the compressed file is damaged ({exc})", where=self._path,
                            fix="Rebuild it: `dvc repro -f` of the stage that writes it") from None


@contextmanager
def open_write(path: str | Path, zstd: bool | None = None, shown: str | Path | None = None) -> Iterator[Any]:
    """A binary file for writing, compressed if `zstd` (default: if its name ends in `.zst`).

    A full disk (ENOSPC, EDQUOT) while writing, flushing or closing it is a `DiskFull` naming `shown`
    (default: `path`), raised where it happens: the file that failed is the one named.
    """
    shown = str(path if shown is None else shown)
    with _no_space_names(shown):
        raw = _raw_file(path, compressed(path) if zstd is None else zstd)
    with io.BufferedWriter(_Guarded(raw, shown), BUFFER) as handle:
        yield handle


def _raw_file(path: str | Path, zstd: bool) -> Any:
    """The unbuffered file under a writer (tests replace it with one that fills up at a chosen byte)."""
    if not zstd:
        return io.FileIO(path, "wb")
    import pyarrow as pa

    return pa.output_stream(str(path), compression="zstd")


@contextmanager
def _no_space_names(shown: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if code := no_space(exc):
            raise DiskFull(shown, code=code) from exc
        raise


class _Guarded(io.RawIOBase):
    """The raw file under a writer's buffer; a full disk here is a DiskFull naming the file.

    The buffer above calls it once per megabyte, so the check costs nothing per record. pyarrow,
    writing Parquet to a Python file, raises the Python exception its write raised: DiskFull too.
    """

    def __init__(self, raw: Any, shown: str):
        super().__init__()
        self._raw, self._shown = raw, shown

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        with _no_space_names(self._shown):
            return self._raw.write(data)

    def flush(self) -> None:
        if not self._raw.closed:
            with _no_space_names(self._shown):
                self._raw.flush()

    def close(self) -> None:
        if self.closed:
            return
        try:
            with _no_space_names(self._shown):
                self._raw.close()      # a compressed stream writes its last frame here
        finally:
            super().close()


def read_jsonl(path: str | Path) -> Iterator[Any]:
    """Yield the objects of a JSON Lines file this project wrote (`.zst`: compressed).

    Lines are split on b"\\n" only: U+2028 and U+2029 are legal inside JSON
    strings and `str.splitlines()` would tear records apart at them.
    """
    with open_read(path) as handle:
        for line in handle:
            if line.strip():
                yield orjson.loads(line)


def read_json(path: str | Path, fix: str) -> Any:
    """A JSON file an earlier stage wrote; missing, it is a one-line error naming the stage to run (`fix`)."""
    path = Path(path)
    if not path.is_file():
        raise CqiaError("not found", where=str(path), fix=fix)
    return orjson.loads(path.read_bytes())


class HashingWriter:
    """A binary file handle that also keeps the sha256 and the size of what went through it,
    so a stage need not read its output again to list it."""

    def __init__(self, handle: Any):
        self._handle = handle
        self._sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sha256.update(data)
        self.size += len(data)
        return self._handle.write(data)

    def tell(self) -> int:
        return self.size

    def sha256(self) -> str:
        return self._sha256.hexdigest()


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


class Staging:
    """Collects a stage's outputs in temporary files and commits them together.

    ``commit()`` renames every staged file into place; if the stage fails
    before that (an exception, a failed gate, SIGKILL) nothing is renamed, and
    ``discard()`` (or the next run) removes the temporaries. Temporaries live
    next to their targets, so the rename is atomic on POSIX.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def path(self, target: str | Path) -> Path:
        target = Path(target)
        with _no_space_names(str(target)):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        self._staged.append((Path(tmp), target))
        return Path(tmp)

    def directory(self, target: str | Path) -> Path:
        target = Path(target)
        with _no_space_names(str(target)):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        self._staged.append((tmp, target))
        return tmp

    @contextmanager
    def open(self, target: str | Path) -> Iterator[Any]:
        """The staged file of `target`, open for writing (compressed if `target` ends in `.zst`)."""
        with open_write(self.path(target), zstd=compressed(target), shown=target) as handle:
            yield handle

    @contextmanager
    def create(self, path: str | Path) -> Iterator[Any]:
        """A file inside a staged directory (`directory()`), open for writing; errors name its final path."""
        with open_write(path, zstd=False, shown=self.final(path)) as handle:
            yield handle

    def write(self, path: str | Path, data: bytes) -> None:
        """`create` a file inside a staged directory with `data` in it."""
        with self.create(path) as handle:
            handle.write(data)

    def final(self, path: str | Path) -> Path:
        """Where a staged file (or a file inside a staged directory) will be once committed."""
        path = Path(path)
        for tmp, target in self._staged:
            if path == tmp:
                return target
            if path.is_relative_to(tmp):
                return target / path.relative_to(tmp)
        return path

    def commit(self) -> None:
        for tmp, target in self._staged:
            if tmp.is_dir():
                os.chmod(tmp, 0o755)
                if target.exists():
                    old = target.with_name(f".{target.name}.old")
                    shutil.rmtree(old, ignore_errors=True)
                    target.rename(old)
                    tmp.rename(target)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    tmp.rename(target)
            else:
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
        self._staged.clear()

    def discard(self) -> None:
        for tmp, _ in self._staged:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        self._staged.clear()

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        code = no_space(exc) if not isinstance(exc, DiskFull) else None
        if code:   # a writer that is not ours (a library writing to a path): name the output it wrote
            shown = self.final(exc.filename) if isinstance(exc.filename, str) else \
                (self._staged[-1][1] if self._staged else Path.cwd())
            error = DiskFull(str(shown), code=code)
        self.discard()
        if code:
            raise error from exc
