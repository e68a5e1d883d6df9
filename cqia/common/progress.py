"""Progress bars for long work, shown only to a person watching a terminal.

A bar goes to stderr, and only when stderr is a terminal: under `dvc repro`
in a terminal a stage shows its progress; in CI, in a pipe or in a log file
nothing is printed, so logs and machine-read output stay clean.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")


def interactive(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr by default) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(items: Iterable[T], desc: str, *, total: int | Callable[[], int | None] | None = None,
             unit: str = "rec", stream: TextIO | None = None) -> Iterator[T]:
    """Yield `items`, with a tqdm bar on `stream` (stderr) when it is a terminal.

    `total` may be a function, called only when the bar is shown (counting costs a read)."""
    stream = sys.stderr if stream is None else stream
    if not interactive(stream):
        yield from items
        return
    from tqdm import tqdm

    if callable(total):
        total = total()

    with tqdm(items, desc=desc, total=total, unit=unit, file=stream, leave=False, dynamic_ncols=True,
              mininterval=0.5) as bar:
        yield from bar


def jsonl_records(path: str | Path, block: int = 1 << 22) -> int | None:
    """About how many records a JSON Lines raw file holds (its lines; a blank line counts too),
    for a bar's total and ETA; None for a JSON array, whose records are not lines. One read at
    disk speed, made only when a bar is shown."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        data = handle.read(block)
        if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            return None
        while data:
            lines += data.count(b"\n")
            last = data[-1:]
            data = handle.read(block)
    return lines + (last != b"\n")
