"""Dedup across the release (cqia/dedup/keys.py, stages/dedup.py) and publishing one category (stages/publish.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from cqia.common.fileio import EMPTY_JSONL, open_read, open_write, read_jsonl
from cqia.common.params import load_yaml
from cqia.dedup.keys import Keys, KeysBuilder, decide, dedup_key, exact_duplicates, from_table, to_table
from cqia.dedup.neardup import NearDupConfig

NEAR = NearDupConfig(threshold=0.8, ngram=3, num_perm=128, bands=32, seed=1)
ANSWER = "抑郁症是一种常见的精神障碍，表现为持续的情绪低落、兴趣减退和精力不足，需要专业的评估和治疗。"


def rec(rid: str, instruction: str, output: str, input: str = "") -> dict:
    return {"id": rid, "instruction": instruction, "input": input, "output": output}


def keys_of(category: str, records: list[dict], near: NearDupConfig | None = NEAR) -> Keys:
    builder = KeysBuilder(category, near)
    for record in records:
        builder.add(record)
    return builder.build()


def test_exact_duplicates_point_at_the_first_occurrence():
    keys = np.array([[1] * 16, [2] * 16, [1] * 16, [2] * 16, [1] * 16], dtype=np.uint8)
    assert exact_duplicates(keys).tolist() == [0, 1, 0, 1, 0]
    assert exact_duplicates(np.zeros((0, 16), np.uint8)).tolist() == []


def test_the_key_is_over_the_normalised_texts_only():
    a = rec("a-0000000000000001", "问", "答")
    assert dedup_key(a) == dedup_key({**a, "id": "b-0000000000000002", "domain": ["x"]})
    assert dedup_key(a) != dedup_key(rec("a-0000000000000001", "问答", ""))  # field boundaries count


def test_cross_category_duplicates_keep_the_first_category_in_release_order():
    first = keys_of("poison", [rec("poison-01", "什么是抑郁症？", ANSWER)])
    later = keys_of("zhihu", [rec("zhihu-01", "什么是抑郁症？", ANSWER), rec("zhihu-02", "别的问题", "别的回答，完全不同。")])
    out = decide([first, later], NEAR)
    assert out == {"poison": [], "zhihu": [{"id": "zhihu-01", "reason": "duplicate_of:poison-01",
                                            "duplicate_of": "poison-01"}]}


def test_near_duplicates_name_the_kept_record_and_the_kept_one_lists_them():
    records = [rec("z-01", "什么是抑郁症？", ANSWER),
               rec("z-02", "什么是抑郁症?", ANSWER.replace("常见", "常见的")),   # ASCII "?" and one character more
               rec("z-03", "怎样学好数学？", "多做题，多总结，理解概念比背公式更重要。")]
    out = decide([keys_of("z", records)], NEAR)["z"]
    assert out[0] == {"id": "z-01", "near_duplicates": ["z-02"]}
    assert out[1]["id"] == "z-02" and out[1]["reason"] == "near_duplicate_of:z-01"
    assert NEAR.threshold <= out[1]["similarity"] <= 1 and NEAR.threshold <= out[1]["output_similarity"] <= 1
    assert len(out) == 2  # z-03 is kept and has no near duplicate: no decision


def test_an_exact_copy_of_a_dropped_record_is_a_duplicate_of_its_first_occurrence():
    records = [rec("z-01", "什么是抑郁症？", ANSWER),
               rec("z-02", "什么是抑郁症?", ANSWER.replace("常见", "常见的")),
               rec("z-03", "什么是抑郁症?", ANSWER.replace("常见", "常见的"))]
    out = {d["id"]: d for d in decide([keys_of("z", records)], NEAR)["z"]}
    assert out["z-02"]["reason"] == "near_duplicate_of:z-01"
    assert out["z-03"]["reason"] == "duplicate_of:z-02"  # nothing of the pair is released


def test_without_near_duplicate_detection_only_exact_copies_are_dropped():
    records = [rec("z-01", "什么是抑郁症？", ANSWER), rec("z-02", "什么是抑郁症?", ANSWER)]
    assert decide([keys_of("z", records, None)], None) == {"z": []}


def test_keys_round_trip_through_arrow():
    keys = keys_of("z", [rec("z-01", "问题一", ANSWER), rec("z-02", "问题二", "回答二")])
    back = from_table("z", to_table(keys))
    assert back.ids == keys.ids
    assert np.array_equal(back.keys, keys.keys) and back.keys.shape == (2, 16)
    assert np.array_equal(back.whole, keys.whole) and back.whole.shape == (2, NEAR.num_perm)
    assert np.array_equal(back.output, keys.output)
    plain = from_table("z", to_table(keys_of("z", [rec("z-01", "问", "答")], None)))
    assert plain.whole is None and plain.output is None


def test_key_rows_made_in_a_batch_are_the_rows_made_one_by_one():
    records = [rec("z-01", "问题一", ANSWER), rec("z-02", "问题二", "回答二"), rec("z-03", "", "")]
    for near in (NEAR, None):
        builder = KeysBuilder("z", near)
        rows = builder.rows(records)
        assert rows == [builder.rows([record])[0] for record in records]
        assert {len(row) for row in rows} == {16 + (2 * NEAR.num_perm if near else 0)}
        assert [row[:16] for row in rows] == [dedup_key(record) for record in records]


# --------------------------------------------------------------------------- the stages, run on the sample data


def run_stage(module: str, *args: str) -> None:
    import importlib

    assert importlib.import_module(module).main(list(args)) == 0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """category, dedup and publish run on the sample raw files of two categories."""
    tmp = tmp_path_factory.mktemp("dedup")
    params = tmp / "params.yaml"
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    params.write_text(text, encoding="utf-8")
    cats = list(load_yaml(params)["categories"])
    for cat in cats:
        suite = load_yaml(params)["categories"][cat]["suite"]
        run_stage("stages.category", "--category", cat, "--params", str(params), "--raw-dir",
                  str(ROOT / "data/raw" / cat), "--reviews", str(ROOT / "data/reviews" / f"{cat}.jsonl"),
                  "--schema", str(ROOT / "schemas/record.schema.json"), "--suite", str(ROOT / f"expectations/{suite}.json"),
                  "--accepted", str(tmp / "stages" / cat / "accepted.jsonl.zst"),
                  "--lineage", str(tmp / "stages" / cat / "lineage.jsonl.zst"),
                  "--rejects", str(tmp / "stages" / cat / "rejects.jsonl"),
                  "--keys", str(tmp / "stages" / cat / "keys.parquet"),
                  "--metrics", str(tmp / "stages" / cat / "metrics.json"))
    dedup(tmp)
    for cat in cats:
        publish(tmp, cat)
    return tmp, cats


def dedup(tmp: Path) -> None:
    run_stage("stages.dedup", "--params", str(tmp / "params.yaml"), "--stages-dir", str(tmp / "stages"),
              "--schema", str(ROOT / "schemas/dedup.schema.json"), "--suite", str(ROOT / "expectations/dedup.json"),
              "--out", str(tmp / "dedup"), "--metrics", str(tmp / "dedup_metrics.json"))


def publish(tmp: Path, cat: str) -> None:
    run_stage("stages.publish", "--category", cat, "--accepted", str(tmp / "stages" / cat / "accepted.jsonl.zst"),
              "--accepted-lineage", str(tmp / "stages" / cat / "lineage.jsonl.zst"), "--rejects", str(tmp / "stages" / cat / "rejects.jsonl"),
              "--category-metrics", str(tmp / "stages" / cat / "metrics.json"),
              "--dedup", str(tmp / "dedup" / f"{cat}.jsonl"), "--schema", str(ROOT / "schemas/record.schema.json"),
              "--suite", str(ROOT / "expectations/publish.json"), "--out", str(tmp / "release" / cat),
              "--lineage", str(tmp / "release/lineage" / cat), "--summary", str(tmp / "publish" / f"{cat}.json"))


def test_every_raw_record_is_in_the_lineage_once_and_the_counts_add_up(built):
    tmp, cats = built
    for cat in cats:
        metrics = json.loads((tmp / "stages" / cat / "metrics.json").read_text())
        summary = json.loads((tmp / "publish" / f"{cat}.json").read_text())
        index = pq.read_table(tmp / "release/lineage" / cat / "index.parquet").to_pylist()
        assert len(index) == len({row["id"] for row in index}) == metrics["raw"] == summary["raw"]
        released = [row for row in index if row["status"] == "released"]
        assert len(released) == summary["released"] == len((tmp / "release" / cat / "train.jsonl").read_bytes().splitlines())
        assert summary["released"] + summary["rejected"] == summary["raw"]
        assert sum(summary["rejected_by_reason"].values()) == summary["rejected"]
        assert all(row["reason"] for row in index if row["status"] == "rejected")


def test_a_category_without_decisions_gets_a_blank_line_not_an_empty_file(built):
    tmp, _ = built
    assert (tmp / "dedup" / "human_value.jsonl").read_bytes() == EMPTY_JSONL    # DVC warns about empty files


def test_dedup_metrics_count_the_decisions_and_keep_the_gate_results(built):
    tmp, cats = built
    metrics = json.loads((tmp / "dedup_metrics.json").read_text())
    decisions = [d for cat in cats for d in read_jsonl(tmp / "dedup" / f"{cat}.jsonl")]
    assert metrics["duplicates"] == sum("duplicate_of" in d for d in decisions) > 0
    assert metrics["accepted"] == sum(json.loads((tmp / "stages" / c / "metrics.json").read_text())["accepted"] for c in cats)
    assert metrics["gates"]["great_expectations"]["success"] and metrics["gates"]["schema"]["decisions"] == len(decisions)
    summary = json.loads((tmp / "publish" / f"{cats[0]}.json").read_text())
    assert summary["gates"]["great_expectations"]["rows"] == summary["raw"]


def test_a_dropped_duplicate_has_its_decision_in_the_lineage(built):
    tmp, cats = built
    decisions = [d for cat in cats for d in read_jsonl(tmp / "dedup" / f"{cat}.jsonl")]
    dup = next(d for d in decisions if "duplicate_of" in d)
    cat = dup["id"].rpartition("-")[0]
    index = {row["id"]: row for row in pq.read_table(tmp / "release/lineage" / cat / "index.parquet").to_pylist()}
    row = index[dup["id"]]
    assert row["status"] == "rejected" and row["reason"] == dup["reason"]
    with open(tmp / "release/lineage" / cat / "lineage.jsonl", "rb") as handle:
        handle.seek(row["lineage_offset"])
        lineage = orjson.loads(handle.read(row["lineage_length"]))
    assert lineage["steps"][-1] == {"step": "dedup", "result": "reject", "reason": dup["reason"],
                                    "duplicate_of": dup["duplicate_of"]}


def test_the_text_lineage_of_every_record_of_the_sample_release_renders(built):
    """`cqia lineage ID` (text) of each raw record of the sample release, released or rejected:
    one numbered line per step, and a review_pending reject reads as pending."""
    from cqia.cli.audit import render_lineage
    from cqia.registry.audit import lineage_result

    tmp, cats = built
    seen = 0
    for cat in cats:
        for line in (tmp / "release/lineage" / cat / "lineage.jsonl").read_bytes().splitlines():
            found = orjson.loads(line)
            text = render_lineage(lineage_result(found, "v0.1"))
            numbered = [row for row in text.splitlines() if row[:2] == "  " and row.strip()[:1].isdigit()]
            assert len(numbered) == len(found["steps"]), text
            if found.get("reason") == "review_pending":
                assert numbered[-1].endswith(
                    "review     pending (this category releases only records a reviewer accepted)"), text
            seen += 1
    assert seen == sum(json.loads((tmp / "publish" / f"{cat}.json").read_text())["raw"] for cat in cats)

def test_a_change_to_a_later_category_leaves_the_earlier_decisions_byte_identical(built, tmp_path):
    tmp, cats = built
    copy = tmp_path / "copy"
    shutil.copytree(tmp, copy)
    before = {cat: (copy / "dedup" / f"{cat}.jsonl").read_bytes() for cat in cats}
    last = cats[-1]
    keys = from_table(last, pq.read_table(copy / "stages" / last / "keys.parquet"))
    extra = keys_of(last, [rec(f"{last}-ffffffffffffffff", "新加的问题", "新加的回答，与其他记录都不相同。")],
                    NearDupConfig.from_params(load_yaml(copy / "params.yaml")["neardup"]))
    grown = Keys(last, keys.ids + extra.ids, np.concatenate([keys.keys, extra.keys]),
                 None if keys.whole is None else np.concatenate([keys.whole, extra.whole]),
                 None if keys.output is None else np.concatenate([keys.output, extra.output]))
    pq.write_table(to_table(grown), copy / "stages" / last / "keys.parquet")
    dedup(copy)
    assert {cat: (copy / "dedup" / f"{cat}.jsonl").read_bytes() for cat in cats} == before


def test_a_decision_for_an_id_the_category_does_not_have_stops_publish(built, tmp_path):
    tmp, cats = built
    copy = tmp_path / "copy"
    shutil.copytree(tmp, copy)
    cat = cats[0]
    with open(copy / "dedup" / f"{cat}.jsonl", "ab") as handle:
        handle.write(b'{"id":"%s-00000000000000ff","reason":"duplicate_of:x-0000000000000001","duplicate_of":"x-0000000000000001"}\n' % cat.encode())
    from cqia.common.errors import GateFailed

    with pytest.raises(GateFailed) as err:
        publish(copy, cat)
    assert "name 1 id(s) that are not accepted records of this category" in str(err.value)
    assert not list((copy / "release").glob(".*.tmp")) and not list((copy / "release/lineage").glob(".*.tmp"))


def test_publish_stops_when_the_records_and_their_lineage_are_not_line_for_line(built, tmp_path):
    """accepted.jsonl and lineage.jsonl of a category stage go together; publish splices the
    lineage by position, so a line out of step is a failed gate naming the line, never a wrong lineage."""
    tmp, cats = built
    copy = tmp_path / "copy"
    shutil.copytree(tmp, copy)
    cat = cats[0]
    path = copy / "stages" / cat / "lineage.jsonl.zst"
    with open_read(path) as handle:
        lines = list(handle)

    def rewrite(new: list[bytes]) -> None:
        with open_write(path) as handle:
            handle.write(b"".join(new))

    rewrite([lines[1], lines[0], *lines[2:]])
    from cqia.common.errors import GateFailed

    with pytest.raises(GateFailed) as err:
        publish(copy, cat)
    assert str(err.value).startswith(f"{path}: line 1 of the accepted records and of their lineage are not the same "
                                     f"record ({cat}-")
    assert str(err.value).endswith(f"Run `dvc repro -f category@{cat}`")
    rewrite(lines[:-1])                                                      # one line short
    with pytest.raises(GateFailed) as err:
        publish(copy, cat)
    assert f"line {len(lines)} of the accepted records" in str(err.value)
    assert not list((copy / "release").glob(".*.tmp"))


def test_publish_summary_carries_the_statistics_of_what_it_released(built):
    from cqia.publish.stats import CategoryStats

    tmp, cats = built
    for cat in cats:
        summary = json.loads((tmp / "publish" / f"{cat}.json").read_text())
        records = [orjson.loads(line) for line in (tmp / "release" / cat / "train.jsonl").read_bytes().splitlines()]
        assert summary["statistics"] == CategoryStats(cat).add_all(records).as_dict()
        # train.jsonl and lineage.jsonl are hashed while written, the rest after: all as on disk
        assert len(summary["files"]) == 4
        for relpath, info in summary["files"].items():
            data = (tmp / "release" / relpath).read_bytes()
            assert info == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}, relpath


def test_released_records_are_the_category_stages_bytes_and_parquet_holds_the_same(built):
    tmp, cats = built
    for cat in cats:
        with open_read(tmp / "stages" / cat / "accepted.jsonl.zst") as handle:
            accepted = set(handle)
        released = (tmp / "release" / cat / "train.jsonl").read_bytes().splitlines(keepends=True)
        assert released and set(released) <= accepted
        assert pq.read_table(tmp / "release" / cat / "train.parquet").to_pylist() == [orjson.loads(r) for r in released]


def test_a_record_larger_than_arrows_json_block_goes_into_parquet():
    from cqia.publish.card import parquet_schema
    from cqia.publish.core import parquet_batch

    big = {"id": "x-0000000000000001", "instruction": "长" * 700_000, "input": "", "output": "答",
           "task_type": {"major": ["问答"], "minor": []}, "domain": ["通用"], "metadata": "", "answer_from": "human",
           "human_verified": False, "copyright": "c"}
    small = dict(big, id="x-0000000000000002", instruction="短")
    pschema = parquet_schema(orjson.loads((ROOT / "schemas/record.schema.json").read_bytes()))
    table = parquet_batch([orjson.dumps(r) + b"\n" for r in (small, big, small)], pschema)
    assert table.schema == pschema
    assert table.to_pylist() == [small, big, small]


def test_a_tag_whose_data_cannot_be_read_is_unreadable_in_history_never_absent(monkeypatch):
    from cqia.cli.audit import render_history
    from cqia.common.errors import CqiaError, ReleaseUnavailable
    from cqia.registry import audit

    class Stub:
        def __init__(self, repo, rev):
            if rev == "v0.2":
                raise ReleaseUnavailable("the release is in neither the local DVC cache nor the DVC remote",
                                         where=f"{rev}:data/release/manifest.json")
            if rev == "v0.3":
                raise CqiaError("no release at this revision")
            self.rev = rev

        def entry(self, record_id):
            return {"status": "released", "record_hash": b"h", "category": "z"}

    monkeypatch.setattr(audit, "Release", Stub)
    result = audit.history("z-0000000000000001", tags=["v0.1", "v0.2", "v0.3", "v0.4"])
    assert [(r["rev"], r["state"]) for r in result["releases"]] == [
        ("v0.1", "added"), ("v0.2", "unreadable"), ("v0.3", "absent"), ("v0.4", "added")]
    assert "v0.2:data/release/manifest.json: the release is in neither" in render_history(result)
