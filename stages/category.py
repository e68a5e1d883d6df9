"""Stage `category@<name>`: one source category's raw files -> gated records.

    python -m stages.category --category 100poison --params params.yaml \\
        --raw-dir data/raw/100poison --reviews data/reviews/100poison.jsonl \\
        --schema schemas/record.schema.json --suite expectations/default.json \\
        --accepted data/stages/100poison/accepted.jsonl.zst \\
        --lineage data/stages/100poison/lineage.jsonl.zst \\
        --rejects data/stages/100poison/rejects.jsonl \\
        --keys data/stages/100poison/keys.parquet \\
        --metrics data/stages/100poison/metrics.json

Reads `categories.<name>`, `gates` and the sketch keys of `neardup` from
params. Writes the accepted records (`--accepted`, one JSON line each, the
bytes the release will hold), their lineage (`--lineage`, line for line; both zstd-compressed when their
names end in `.zst`, as dvc.yaml names them: cqia/common/fileio.py), the
rejects with reason codes and their lineage, the keys the dedup stage compares
(cqia/dedup/keys.py: id, exact key, MinHash signatures) and metrics; all five
appear together, and only if every gate passed.

Where the records are judged is an environment setting, never a param: the
bytes are the same either way (cqia/ingest/executor.py). CQIA_EXECUTOR=local
(default) uses forked workers on this machine (CQIA_WORKERS of them);
CQIA_EXECUTOR=ray sends the chunks to a Ray cluster (docs/ray.md).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from cqia.gates.accounting import check_accounting
from cqia.dedup.keys import to_table
from cqia.common.entry import arguments, run, sweep
from cqia.common.errors import CqiaError, GateFailed
from cqia.common.fileio import Staging, dumps_pretty, file_digest
from cqia.dedup.neardup import NearDupConfig
from cqia.ingest.formats import (FORMATS, SNIFF_BYTES, Format, RawItem, check_encoding, check_layout,
                          file_problems, parse_json_array, parse_jsonl, sniff)
from cqia.ingest.executor import open_workers
from cqia.common.params import load_yaml
from cqia.ingest.config import load_checked_category
from cqia.common.progress import jsonl_records, progress
from cqia.ingest.judge import Source
from cqia.ingest.written import GX_COLUMNS, JudgeSpec
from cqia.ingest.decisions import load_decisions
from cqia.gates.schema import RecordSchema

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


def read_raw_file(path: Path, fmt: Format) -> RawItems:
    """The raw items of one file, with file-level problems as one-line errors."""
    return RawItems(path, fmt)


# Test hook, used only by tests/test_reliability_e2e.py: CQIA_TEST_PAUSE_AFTER=<category>:<n> makes the
# stage of that category flush its staged outputs after its n-th record and sleep, so that the test
# can SIGKILL it in the middle of writing.
PAUSE_ENV = "CQIA_TEST_PAUSE_AFTER"


def _pause_after(category: str) -> int | None:
    name, _, count = os.environ.get(PAUSE_ENV, "").partition(":")
    return int(count) if name == category and count.isdigit() else None


def _pause(n: int, *handles) -> None:
    for handle in handles:
        handle.flush()
        handle.raw.flush()         # a .zst file's compressor, under its buffer
    print(f"{PAUSE_ENV}: paused after {n} records", file=sys.stderr, flush=True)
    time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    args = arguments("stages.category", __doc__, ("--category", "--params", "--raw-dir", "--reviews", "--schema",
                                                  "--suite", "--accepted", "--lineage", "--rejects", "--keys",
                                                  "--metrics"), argv)
    sweep(args.accepted, args.lineage, args.rejects, args.keys, args.metrics)
    from cqia.gates.gx import GateProcess, failure_report, load_suite

    suite = load_suite(args.suite)
    gate = GateProcess(suite)  # first: GX's import overlaps everything below

    params = load_yaml(args.params)
    category = load_checked_category(params, args.category, args.params)
    chunk_rows = int((params.get("gates") or {}).get("chunk_rows", 200_000))
    near = NearDupConfig.from_params(params.get("neardup"), args.params)
    schema = RecordSchema.from_file(args.schema)
    reviews = Path(args.reviews)
    if not reviews.is_file():
        raise CqiaError("review file not found", where=str(reviews),
                        fix="Create it (an empty file means no decisions yet)")
    with open(reviews, "rb") as handle:
        decisions = load_decisions(handle, str(reviews))

    raw_dir = Path(args.raw_dir)
    spec = JudgeSpec(category, schema.schema, decisions, near, suite.get("name", ""))
    keys = spec.keys()
    fmt = FORMATS[category.format]
    counts: Counter[str] = Counter()
    files: dict[str, Any] = {}
    accepted = rejected = written = 0
    pause_after = _pause_after(category.name)
    rows: list[tuple] = []

    with Staging() as staging, staging.open(args.accepted) as acc_out, staging.open(args.lineage) as lin_out, \
            staging.open(args.rejects) as rej_out, open_workers(spec) as workers:
        processor = workers.processor
        for name in category.raw:
            path = raw_dir / name
            if not path.is_file():
                raise CqiaError(f"raw file '{name}' listed in params is missing", where=str(path),
                                fix=f"Put it in {raw_dir}/ (or `dvc pull` it), or fix categories.{category.name}.raw")
            source = Source(file=path.as_posix(), md5=file_digest(path))
            items = read_raw_file(path, fmt)
            kept = progress(workers.outcomes(source, items), f"{category.name} {name}",
                            total=lambda path=path: jsonl_records(path))
            for is_accepted, reason, line, row, key_row in kept:
                if written == pause_after:
                    _pause(written, acc_out, lin_out, rej_out)
                written += 1
                if is_accepted:
                    accepted += 1
                    acc_out.write(line[0])
                    lin_out.write(line[1])
                    rows.append(row)
                    keys.add_row(row[0], key_row)
                    if len(rows) >= chunk_rows:
                        gate.validate_rows(GX_COLUMNS, rows)
                        rows = []
                else:
                    rejected += 1
                    counts[reason] += 1
                    rej_out.write(line)
            files[source.file] = {"md5": source.md5, "records": items.records}

        if processor.unused_decisions:
            unknown = sorted(processor.unused_decisions, key=lambda i: decisions[i].line)
            first = decisions[unknown[0]]
            raise CqiaError(f"review decision for id '{first.id}', which is not a record of category "
                            f"'{category.name}' ({len(unknown)} such decision(s))",
                            where=f"{reviews}:{first.line}",
                            fix="Fix the id (see `cqia review export`) or remove the line")
        raw_total = sum(f["records"] for f in files.values())
        accounting = check_accounting("raw", raw_total, {"accepted": accepted, "rejected": rejected},
                                      where=f"category {category.name}")
        if rows or not gate.rows:
            gate.validate_rows(GX_COLUMNS, rows)
        gx_result = gate.result()
        if not gx_result["success"]:
            raise GateFailed(failure_report(gx_result, f"category {category.name} ({args.suite})"))

        metrics = {
            "category": category.name,
            "format": category.format,
            "raw": raw_total,
            "accepted": accepted,
            "rejected": rejected,
            "rejected_by_reason": dict(sorted(counts.items())),
            "files": files,
            "gates": {
                "schema": {"rejected": counts.get("schema_invalid", 0)},
                "accounting": accounting,
                "great_expectations": gx_result,
            },
        }
        import pyarrow.parquet as pq

        with staging.open(args.keys) as out:
            pq.write_table(to_table(keys.build()), out, compression="zstd")
        with staging.open(args.metrics) as out:
            out.write(dumps_pretty(metrics))
    return 0


if __name__ == "__main__":
    run(main)
