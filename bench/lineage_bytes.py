"""Bytes of a bench repo's lineage in format 1 (before/after whole) and in format 2 (edits).

    python -m bench.run --records 1000000 --clusters 0.3 --keep     # at a commit before lineage format 2
    python -m bench.lineage_bytes bench/out/repo-1000000-clusters0.3/repo

Converts every line of the stage lineage (`data/stages/*/lineage.jsonl.zst`), the stage
rejects and the release lineage with `store_edits` (cqia/common/lineage.py), and prints
their sizes before and after, plain and zstd-compressed (Arrow's codec, as the stages write
it). Lines already in format 2 are counted as they are. Slow: it parses every line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cqia.common import lineage as L  # noqa: E402
from cqia.ingest.formats import edit_base  # noqa: E402

KINDS = (("stage lineage (.zst)", "data/stages/*/lineage.jsonl.zst"), ("stage rejects", "data/stages/*/rejects.jsonl"),
         ("release lineage", "data/release/lineage/*/lineage.jsonl"))


def convert(line: bytes) -> bytes:
    """The line with its edit steps stored as edits (format 2); the same bytes if it has none."""
    obj = orjson.loads(line)
    steps = obj.get("steps", [])
    if not any(L.is_edit(s) and "edits" not in s for s in steps):
        return line
    parse = steps[0]
    L.store_edits(steps, edit_base(parse.get("format", ""), parse.get("layout", ""), obj.get("raw")))
    return orjson.dumps(obj) + b"\n"


def main(argv: list[str] | None = None) -> int:
    import pyarrow as pa

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    repo = Path(args[0])
    for kind, pattern in KINDS:
        old = new = zold = znew = lines = edited = 0
        start = time.process_time()
        for path in sorted(repo.glob(pattern)):
            if path.suffix == ".zst":
                with pa.input_stream(str(path), compression="zstd") as handle:
                    data = handle.read()
            else:
                data = path.read_bytes()
            original = data.splitlines(keepends=True)
            out = [convert(line) for line in original]
            edited += sum(a is not b for a, b in zip(original, out))
            converted = b"".join(out)
            lines += len(out)
            old, new = old + len(data), new + len(converted)
            zold += len(pa.compress(data, codec="zstd", asbytes=True)) if data else 0
            znew += len(pa.compress(converted, codec="zstd", asbytes=True)) if converted else 0
        if not lines:
            continue
        print(f"{kind:<22} {lines:>9} lines, {edited:>8} converted: {old / 2**20:9.1f} MB -> {new / 2**20:9.1f} MB "
              f"({1 - new / old:.1%} less); zstd {zold / 2**20:8.1f} MB -> {znew / 2**20:8.1f} MB "
              f"({1 - znew / zold:.1%} less)  [{time.process_time() - start:.0f} s CPU]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
