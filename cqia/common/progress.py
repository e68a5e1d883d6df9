"""Progress bars for long work, shown only to a person watching a terminal.

A bar goes to stderr, and only when stderr is a terminal: under `dvc repro`
in a terminal a stage shows its progress; in CI, in a pipe or in a log file
nothing is printed, so logs and machine-read output stay clean.
"""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")


def interactive(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr by default) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "rec",
             stream: TextIO | None = None) -> Iterator[T]:
    """Yield `items`, with a tqdm bar on `stream` (stderr) when it is a terminal."""
    stream = sys.stderr if stream is None else stream
    if not interactive(stream):
        yield from items
        return
    from tqdm import tqdm

    with tqdm(items, desc=desc, total=total, unit=unit, file=stream, leave=False, dynamic_ncols=True,
              mininterval=0.5) as bar:
        yield from bar
