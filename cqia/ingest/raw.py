"""A source category's raw files, read as raw items with file-level problems as one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from cqia.common.errors import CqiaError
from cqia.common.fileio import file_digest
from cqia.ingest.formats import (
    SNIFF_BYTES,
    Format,
    RawItem,
    check_encoding,
    check_layout,
    file_problems,
    parse_json_array,
    parse_jsonl,
    sniff,
)
from cqia.ingest.judge import Source


class RawItems:
    """The raw items of one file, and the number of raw records counted apart from the parser.

    `records` counts the file's non-blank lines (JSON Lines) or its array's
    elements as they are read; the accounting gate compares it with the
    accepted and rejected outcomes, so a record the parser skipped would fail
    the stage instead of disappearing.
    """

    def __init__(self, path: Path, fmt: Format):
        self.path = path
        self.fmt = fmt
        self.records = 0
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
        if not head.strip(b"\xef\xbb\xbf \t\r\n"):
            raise CqiaError("the raw file is empty", where=str(path),
                            fix="Put the upstream file there, or remove it from the category's 'raw' list")
        with file_problems(path):
            check_encoding(head)
        self.layout = sniff(head)
        if fmt.container == "jsonl" and self.layout == "array":
            raise CqiaError("the file is one JSON array, but this format expects JSON Lines (one object per line)",
                            where=f"{path}:1", fix=f"Convert it to JSON Lines (e.g. `jq -c '.[]' {path} > "
                            f"{path}.jsonl`), or use a format that reads JSON arrays")

    def __iter__(self) -> Iterator[RawItem]:
        with file_problems(self.path):
            if self.layout == "array":
                items = list(parse_json_array(self.path.read_bytes()))
                self.records = len(items)
                yield from check_layout(self.fmt, items)
                return
            with open(self.path, "rb") as handle:
                yield from check_layout(self.fmt, parse_jsonl(self._count(handle), self.fmt.jsonl_layout))

    def _count(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        for line in lines:
            body = line[3:] if line.startswith(b"\xef\xbb\xbf") else line
            if body.strip():
                self.records += 1
            yield line


def raw_files(category_name: str, names: Iterable[str], raw_dir: Path, fmt: Format) -> Iterator[tuple[Source, RawItems]]:
    """Each raw file a category lists, in its order, with its provenance (path and md5)."""
    for name in names:
        path = raw_dir / name
        if not path.is_file():
            raise CqiaError(f"raw file '{name}' listed in params is missing", where=str(path),
                            fix=f"Put it in {raw_dir}/ (or `dvc pull` it), or fix categories.{category_name}.raw")
        yield Source(file=path.as_posix(), md5=file_digest(path)), RawItems(path, fmt)
