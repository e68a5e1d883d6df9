"""Stage `category@<name>`: one source category's raw files -> gated records.

    python -m stages.category --category 100poison --params params.yaml \\
        --raw-dir data/raw/100poison --reviews data/reviews/100poison.jsonl \\
        --schema schemas/record.schema.json --suite expectations/default.json \\
        --accepted data/stages/100poison/accepted.jsonl \\
        --rejects data/stages/100poison/rejects.jsonl \\
        --metrics data/stages/100poison/metrics.json

Reads `categories.<name>` and `gates` from params. Writes the accepted
records with their lineage, the rejects with reason codes, and metrics; all
three appear together, and only if every gate passed.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from cqia.entry import run, sweep
from cqia.errors import CqiaError, GateFailed
from cqia.fileio import Staging, dumps_line, dumps_pretty, file_digest
from cqia.formats import FORMAT_NAMES, FORMATS, parse_json_array, parse_jsonl, sniff
from cqia.params import load_category, load_yaml
from cqia.records import Outcome, Processor, Source
from cqia.review import load_decisions
from cqia.schema import RecordSchema

GX_COLUMNS = ("id", "instruction", "input", "output", "answer_from", "human_verified", "copyright",
              "metadata", "task_type_major", "domain")


def gx_row(record: dict[str, Any]) -> tuple:
    return (record["id"], record["instruction"], record["input"], record["output"], record["answer_from"],
            record["human_verified"], record["copyright"], record["metadata"],
            "|".join(record["task_type"]["major"]), "|".join(record["domain"]))


def read_raw_file(path: Path, container: str):
    """The raw items of one file, with file-level problems as one-line errors."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head.strip(b"\xef\xbb\xbf \t\r\n"):
        raise CqiaError("the raw file is empty", where=str(path),
                        fix="Put the upstream file there, or remove it from the category's 'raw' list")
    layout = sniff(head)
    if container == "jsonl" and layout == "array":
        raise CqiaError("the file is one JSON array, but this format expects JSON Lines (one object per line)",
                        where=f"{path}:1", fix="Convert it to JSON Lines, or use a format that reads JSON arrays")
    if layout == "array":
        try:
            return list(parse_json_array(path.read_bytes()))
        except ValueError as exc:
            raise CqiaError(str(exc), where=str(path), fix="Fix the JSON; nothing was written") from None
    handle = open(path, "rb")
    return _closing(parse_jsonl(handle, "exam-jsonl" if container == "sniff" else "jsonl"), handle)


def _closing(items, handle):
    with handle:
        yield from items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stages.category", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--category", "--params", "--raw-dir", "--reviews", "--schema", "--suite",
                 "--accepted", "--rejects", "--metrics"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args(argv)
    sweep(args.accepted, args.rejects, args.metrics)

    params = load_yaml(args.params)
    category = load_category(params, args.category, FORMAT_NAMES, args.params)
    chunk_rows = int((params.get("gates") or {}).get("chunk_rows", 50_000))
    schema = RecordSchema.from_file(args.schema)
    from cqia.gx_gate import load_suite

    suite = load_suite(args.suite)
    reviews = Path(args.reviews)
    if not reviews.is_file():
        raise CqiaError("review file not found", where=str(reviews),
                        fix="Create it (an empty file means no decisions yet)")
    with open(reviews, "rb") as handle:
        decisions = load_decisions(handle, str(reviews))

    raw_dir = Path(args.raw_dir)
    processor = Processor(category, schema, decisions)
    fmt = FORMATS[category.format]
    counts: Counter[str] = Counter()
    files: dict[str, Any] = {}
    accepted = rejected = 0
    chunks: list = []
    rows: list[tuple] = []

    with Staging() as staging, staging.open(args.accepted) as acc_out, staging.open(args.rejects) as rej_out:
        for name in category.raw:
            path = raw_dir / name
            if not path.is_file():
                raise CqiaError(f"raw file '{name}' listed in params is missing", where=str(path),
                                fix=f"Put it in {raw_dir}/ (or `dvc pull` it), or fix categories.{category.name}.raw")
            source = Source(file=path.as_posix(), md5=file_digest(path))
            n = 0
            for outcome in processor.process(source, read_raw_file(path, fmt.container)):
                n += 1
                if outcome.accepted:
                    accepted += 1
                    outcome.lineage["steps"].append({"step": "gate", "gate": "great_expectations",
                                                     "suite": suite.get("name", ""), "result": "pass"})
                    acc_out.write(dumps_line({"record": outcome.record, "lineage": outcome.lineage}))
                    rows.append(gx_row(outcome.record))
                    if len(rows) >= chunk_rows:
                        chunks.append(_frame(rows))
                        rows = []
                else:
                    rejected += 1
                    counts[outcome.reason or "unknown"] += 1
                    rej_out.write(dumps_line(outcome.lineage))
            files[source.file] = {"md5": source.md5, "records": n}

        if processor.unused_decisions:
            unknown = sorted(processor.unused_decisions, key=lambda i: decisions[i].line)
            first = decisions[unknown[0]]
            raise CqiaError(f"review decision for id '{first.id}', which is not a record of category "
                            f"'{category.name}' ({len(unknown)} such decision(s))",
                            where=f"{reviews}:{first.line}",
                            fix="Fix the id (see `cqia review export`) or remove the line")
        raw_total = sum(f["records"] for f in files.values())
        accounting = {"raw": raw_total, "accepted": accepted, "rejected": rejected,
                      "success": raw_total == accepted + rejected}
        if not accounting["success"]:
            raise GateFailed(f"accounting gate failed: {raw_total} raw records but {accepted} accepted + "
                             f"{rejected} rejected", where=f"category {category.name}")
        if rows:
            chunks.append(_frame(rows))
        if not chunks:
            chunks.append(_frame([]))
        from cqia.gx_gate import failure_report, run_suite

        gx_result = run_suite(suite, chunks)
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
        with staging.open(args.metrics) as out:
            out.write(dumps_pretty(metrics))
    return 0


def _frame(rows: list[tuple]):
    import pandas as pd

    return pd.DataFrame.from_records(rows, columns=list(GX_COLUMNS))


if __name__ == "__main__":
    run(main)
