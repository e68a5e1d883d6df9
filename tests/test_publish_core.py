"""The publish core (cqia/publish/core.py) over lines in memory: its Parquet batches, written by a
background thread, come out in order, and a failure there is the stage's failure."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from cqia.common.errors import DiskFull
from cqia.common.fileio import HashingWriter
from cqia.common.lineage import LineageWriter
from cqia.gates.schema import RecordSchema
from cqia.publish import core
from cqia.publish.card import parquet_schema

ROOT = Path(__file__).resolve().parent.parent


def record(n: int) -> dict:
    return {"id": f"zhihu-{n:016x}", "instruction": f"问题{n}", "input": "", "output": f"回答{n}：内容",
            "task_type": {"major": ["问答"], "minor": []}, "domain": ["通用"], "metadata": "",
            "answer_from": "human", "human_verified": False, "copyright": "c"}


def lines(count: int) -> tuple[list[bytes], list[bytes]]:
    records = [orjson.dumps(record(n)) + b"\n" for n in range(count)]
    lineages = [orjson.dumps({"id": record(n)["id"], "status": "accepted", "category": "zhihu",
                              "steps": [{"step": "schema", "result": "pass"}]}) + b"\n" for n in range(count)]
    return records, lineages


def publication(count: int) -> core.Publication:
    schema = RecordSchema.from_file(ROOT / "schemas/record.schema.json")
    return core.Publication("zhihu", count, {}, schema, parquet_schema(schema.schema))


def run(pub: core.Publication, count: int, parquet) -> None:
    records, lineages = lines(count)
    pub.run(records, lineages, [], HashingWriter(io.BytesIO()), LineageWriter(io.BytesIO()), parquet, where="x")


def test_parquet_batches_written_in_the_background_keep_the_records_order(monkeypatch):
    monkeypatch.setattr(core, "BATCH", 3)               # 10 records: four batches, some waiting for the writer
    pub = publication(10)
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, pub.pschema) as parquet:
        run(pub, 10, parquet)
    table = pq.read_table(io.BytesIO(sink.getvalue()))
    assert table.to_pylist() == [record(n) for n in range(10)]
    assert pq.ParquetFile(io.BytesIO(sink.getvalue())).num_row_groups == 4
    assert pub.released == 10 and pub.arrow_bytes > 0
    assert not [t for t in threading.enumerate() if t.name.startswith("parquet")]


def test_a_full_disk_in_the_parquet_thread_is_the_stages_error_and_the_thread_ends(monkeypatch):
    monkeypatch.setattr(core, "BATCH", 2)
    pub = publication(9)

    class Full:
        writes = 0

        def write_table(self, table) -> None:
            self.writes += 1
            if self.writes == 2:
                raise DiskFull("data/release/zhihu/train.parquet")

    with pytest.raises(DiskFull, match="train.parquet"):
        run(pub, 9, Full())
    assert not [t for t in threading.enumerate() if t.name.startswith("parquet")]
