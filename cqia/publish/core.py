"""The publish stage's work, over open inputs and outputs: a category's accepted records and
their dedup decisions -> its released records (JSON Lines and Parquet), its lineage and index,
the release gates and the summary the merge and report stages read.

A released record's line is the category stage's line, copied; its lineage line gets its status
and dedup step spliced in (cqia.common.lineage.final_line); the Parquet file is built by Arrow's
JSON reader from the same lines. The entry (stages/publish.py) opens the files; this module never
sees an output path.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import zip_longest
from typing import Any, Iterable

import orjson

from cqia.common.errors import CqiaError, GateFailed
from cqia.common.fileio import HashingWriter, read_jsonl
from cqia.common.lineage import LineageWriter, dedup_pass_step, dedup_reject_step, final_line
from cqia.common.progress import progress
from cqia.gates.accounting import check_accounting
from cqia.gates.schema import RecordSchema
from cqia.publish.stats import CategoryStats

BATCH = 10_000              # records per Parquet write
AHEAD = 2                   # Parquet batches waiting for the writer thread at most (memory stays bounded)


def load_decisions(path) -> dict[str, dict[str, Any]]:
    """The dedup stage's decisions for one category, by id."""
    if not path.is_file():
        raise CqiaError("no dedup decisions for this category", where=str(path), fix="Run `dvc repro dedup` first")
    return {d["id"]: d for d in read_jsonl(path)}


def dedup_step(decision: dict[str, Any] | None) -> tuple[dict[str, Any], str | None, str]:
    """The lineage step of the dedup decision, the reject reason (None: released) and its detail."""
    if decision is None or "reason" not in decision:
        return dedup_pass_step(decision and decision.get("near_duplicates")), None, ""
    step = dedup_reject_step(decision)
    if "duplicate_of" in decision:
        return step, decision["reason"], f"same instruction, input and output as {decision['duplicate_of']}"
    kept = decision["near_duplicate_of"]
    return step, decision["reason"], (
        f"near duplicate of {kept} (kept: first in release order): estimated Jaccard similarity "
        f"{decision['similarity']:.2f} of instruction+input+output and {decision['output_similarity']:.2f} of output, "
        f"over character {decision['ngram']}-grams; threshold {decision['threshold']}")


def parquet_batch(lines: list[bytes], pschema):
    """The Arrow table of released record lines (Arrow's JSON reader: 4x faster than from_pylist).

    The lines go to Arrow as a buffer, never a Python file object (cqia.common.entry.exit_now says why)."""
    import pyarrow as pa
    import pyarrow.json as pj

    options = pj.ParseOptions(explicit_schema=pschema, unexpected_field_behavior="error")
    # Arrow reads in blocks, and a record must fit in one.
    blocks = pj.ReadOptions(block_size=max(1 << 20, 2 * max(map(len, lines))))
    return pj.read_json(pa.BufferReader(b"".join(lines)), read_options=blocks, parse_options=options).select(pschema.names)


class _Background:
    """One thread that runs the Parquet batches, in order, while the stage goes on with the next records.

    Arrow's JSON reader and Parquet writer release the GIL, so on a second core the Parquet file
    costs the stage little wall time; the file's bytes are the same (one writer, batches in order).
    At most AHEAD batches wait; an error in the thread is raised by the next `submit` or at the end.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet")
        self._pending: deque[Future] = deque()

    def __enter__(self) -> "_Background":
        return self

    def submit(self, fn, *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > AHEAD or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            while self._pending:
                future = self._pending.popleft()
                if exc_type is None:
                    future.result()
                else:
                    future.cancel()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class Publication:
    """One category's publish run: what was released, what dedup dropped, and the statistics."""

    def __init__(self, name: str, accepted: int, decisions: dict[str, dict[str, Any]], schema: RecordSchema,
                 pschema) -> None:
        self.name, self.expected, self.decisions, self.schema, self.pschema = name, accepted, decisions, schema, pschema
        self.released = 0
        self.arrow_bytes = 0    # the released records as Arrow data: the split's num_bytes in the dataset card
        self.dropped: Counter[str] = Counter()
        self.near_kept = 0
        self.example: dict[str, Any] | None = None
        self.stats = CategoryStats(name)

    def run(self, records: Iterable[bytes], lineages: Iterable[bytes], rejects: Iterable[dict[str, Any]],
            records_out: HashingWriter, lineage_out: LineageWriter, parquet, where: str) -> None:
        """Publish the accepted records and their lineage lines (`where`: the lineage file, for errors),
        then append the category stage's rejects to the lineage."""
        with _Background() as background:
            self._run(records, lineages, records_out, lineage_out, lambda lines: background.submit(
                self._write_batch, parquet, lines), where)
        for entry in rejects:
            lineage_out.write(entry)

    def _run(self, records, lineages, records_out, lineage_out, write_batch, where: str) -> None:
        batch: list[bytes] = []
        pairs = zip_longest(records, lineages)
        for n, (line, lineage) in enumerate(progress(pairs, f"publish {self.name}", total=self.expected), 1):
            record = orjson.loads(line) if line is not None else None
            rid = record["id"] if record else None
            step, reason, detail = dedup_step(self.decisions.pop(rid, None))
            status = "released" if reason is None else "rejected"
            final = final_line(lineage, rid, status, step, reason and {"reason": reason, "detail": detail}) \
                if rid is not None and lineage is not None else None
            if final is None:
                raise GateFailed(f"line {n} of the accepted records and of their lineage are not the same record "
                                 f"({rid or 'no record'})", where=where, fix=f"Run `dvc repro -f category@{self.name}`")
            if reason is not None:
                self.dropped[reason.partition(":")[0]] += 1
                lineage_out.write_line(final, rid, self.name, False, reason)
                continue
            if not self.schema.is_valid(record):
                raise GateFailed(f"record {rid} fails the schema at the release gate "
                                 f"({self.schema.explain(record)})", where=f"category {self.name}")
            self.released += 1
            self.near_kept += "near_duplicates" in step
            self.example = self.example or record
            self.stats.add(record)
            record_at = (records_out.tell(), line)
            records_out.write(line)
            batch.append(line)
            if len(batch) >= BATCH:
                write_batch(batch)
                batch = []
            lineage_out.write_line(final, rid, self.name, True, None, record_at)
        if batch:
            write_batch(batch)

    def _write_batch(self, parquet, lines: list[bytes]) -> None:
        table = parquet_batch(lines, self.pschema)
        parquet.write_table(table)
        self.arrow_bytes += table.nbytes   # what `datasets` counts as a split's num_bytes when it reads the file

    def check(self, index, gate, suite: str, decisions_where: str) -> dict[str, Any]:
        """The release gates on the lineage index: every dedup decision used, Great Expectations (every
        raw record exactly once, released or rejected with a reason code), accounting (accepted =
        released + dropped duplicates). Returns {"great_expectations", "accounting"}."""
        import pyarrow as pa

        from cqia.gates.gx import failure_report

        if self.decisions:
            unknown = sorted(self.decisions)
            raise GateFailed(f"the dedup decisions name {len(unknown)} id(s) that are not accepted records of this "
                             f"category, e.g. {unknown[0]}", where=decisions_where, fix="Run `dvc repro dedup`")
        gx_schema = pa.schema([("id", pa.string()), ("status", pa.string()), ("reason", pa.string())])
        gate.validate_table(index.select(["id", "status", "reason"]).cast(gx_schema))
        result = gate.result()
        if not result["success"]:
            raise GateFailed(failure_report(result, f"category {self.name} ({suite})"))
        accounting = check_accounting("accepted", self.expected,
                                      {"released": self.released, "duplicates": sum(self.dropped.values())},
                                      where=f"category {self.name}")
        return {"great_expectations": result, "accounting": accounting}

    def summary(self, cmetrics: dict[str, Any], files: dict[str, dict[str, Any]], gates: dict[str, Any]) -> dict:
        """What the merge and report stages read of this category (data/publish/<category>.json)."""
        rejected = Counter(cmetrics["rejected_by_reason"]) + self.dropped
        return {"category": self.name, "raw": cmetrics["raw"], "accepted": cmetrics["accepted"],
                "released": self.released, "num_bytes": self.arrow_bytes, "rejected": sum(rejected.values()),
                "rejected_by_reason": dict(sorted(rejected.items())),
                "near_duplicate_clusters": self.near_kept,
                "raw_inputs": {file: info["md5"] for file, info in cmetrics["files"].items()},
                "files": files, "example": self.example, "statistics": self.stats.as_dict(),
                "gates": {"schema": {"released_checked": self.released, "success": True},
                          "accounting": gates["accounting"],
                          "great_expectations": gates["great_expectations"]}}
