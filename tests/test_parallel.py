"""The category stage on several cores (cqia/ingest/parallel.py) gives the bytes of the sequential run.

Small fixtures, cut into chunks of a few hundred bytes, so that byte-identical
copies, review decisions and file problems fall into other chunks than the
records they depend on. `CQIA_WORKERS=1` is the sequential run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import orjson
import pytest
from ruamel.yaml import YAML

from bench.generate import generate
from conftest import mid_write
from cqia.common.errors import CqiaError
from cqia.common.params import load_yaml
from cqia.dedup.keys import KeysBuilder
from cqia.dedup.neardup import NearDupConfig
from cqia.gates.schema import RecordSchema
from cqia.ingest.config import checked_category
from cqia.ingest.decisions import Decision, load_decisions
from cqia.ingest.executor import EXECUTOR_ENV, executor_name
from cqia.ingest.formats import FORMATS
from cqia.ingest.judge import Processor, Source, make_id
from cqia.ingest.parallel import CHUNK_ENV, WORKERS_ENV, Workers, chunk_bytes, worker_count
from cqia.ingest.raw import RawItems
from cqia.ingest.written import written_form
from stages.category import main

pytestmark = pytest.mark.process  # the stage entry: its Great Expectations gate and forked workers

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = RecordSchema.from_file(ROOT / "schemas/record.schema.json")
NEAR = NearDupConfig(ngram=3, num_perm=16, bands=4)
PARAMS = load_yaml(ROOT / "params.yaml")
POISON = {"format": "poison-mpts", "defaults": PARAMS["categories"]["100poison"]["defaults"],
          "rules": {"min_chars": {"output": 4}}, "normalize": {"fullwidth_ascii": True}}


def run(raw_dir: Path, name: str, entry: dict, decisions: dict[str, Decision], workers: int, chunk: int | None = None,
        render=None):
    """Everything the stage keeps of one category's raw files: (kept outcomes, unused decisions, records per file)."""
    category = checked_category(name, {**entry, "raw": entry.get("raw", ["train.jsonl"])})
    processor = Processor(category, SCHEMA, decisions)
    render = render or partial(written_form, suite="default", keys=KeysBuilder(name, NEAR))
    kept, records = [], {}
    with Workers(processor, render, workers, chunk) as pool:
        for file in category.raw:
            items = RawItems(raw_dir / file, FORMATS[category.format])
            kept += pool.outcomes(Source((raw_dir / file).as_posix(), "0" * 32), items)
            records[file] = items.records
        assert (pool.chunks_sent > 1) == (workers > 1 and chunk is not None)
    return kept, sorted(processor.unused_decisions), records


def same_in_parallel(raw_dir: Path, name: str, entry: dict, decisions=None, chunk: int = 300):
    """Run the category sequentially and in chunks of `chunk` bytes on 2 workers; both keep the same."""
    decisions = decisions or {}
    sequential = run(raw_dir, name, entry, decisions, 1)
    assert run(raw_dir, name, entry, decisions, 2, chunk) == sequential
    return sequential


def line(prompt: str, answer: str) -> bytes:
    return orjson.dumps({"prompt": prompt, "answer": answer}, option=orjson.OPT_APPEND_NEWLINE)


def decision(rid: str, verdict: str, number: int) -> Decision:
    return Decision(rid, verdict, "li", "复核", "2024-01-02", number)


@pytest.mark.parametrize("name", list(PARAMS["categories"]))
def test_the_sample_categories_in_chunks_keep_what_one_process_keeps(name):
    entry = PARAMS["categories"][name]
    with open(ROOT / "data/reviews" / f"{name}.jsonl", "rb") as handle:
        decisions = load_decisions(handle, "reviews")
    kept, unused, _ = same_in_parallel(ROOT / "data/raw" / name, name, entry, decisions)
    assert kept and unused == []


def test_copies_in_other_chunks_are_numbered_in_file_order_and_decisions_follow_them(tmp_path):
    first, second = line("什么是幸福？", "幸福是一种满足的感受。"), line("怎样交朋友？", "真诚待人，多听少说。")
    body = [first, line("问题一", "回答一很长很长。"), first, b"\n", first, line("坏", "短"), b"not json\n", second,
            b"\xef\xbb\xbf" + second, line("问题二", "回答二很长很长。"), b"not json\n", first, b"[1, 2]\n", second,
            b"[1, 2]\n", line("问题三", "回答三很长很长。"), first]
    (tmp_path / "train.jsonl").write_bytes(b"".join(body))
    raw = orjson.loads(first)
    decisions = {make_id("t", raw, "", 0): decision(make_id("t", raw, "", 0), "accept", 1),
                 make_id("t", raw, "", 2): decision(make_id("t", raw, "", 2), "reject", 2),
                 make_id("t", raw, "", 9): decision(make_id("t", raw, "", 9), "accept", 3)}    # no such copy
    kept, unused, records = same_in_parallel(tmp_path, "t", POISON, decisions, chunk=60)
    assert records == {"train.jsonl": 16}
    assert unused == [make_id("t", raw, "", 9)]
    lineage = [orjson.loads(line[1]) if accepted else orjson.loads(line) for accepted, _, line, *_ in kept]
    copies = [entry for entry in lineage if entry["raw"] == raw]
    assert [entry["id"] for entry in copies] == [make_id("t", raw, "", n) for n in range(5)]
    assert [entry["status"] for entry in copies] == ["accepted", "accepted", "rejected", "accepted", "accepted"]
    assert [s["step"] for s in copies[0]["steps"]][-3:] == ["review", "schema", "gate"]


def test_generated_categories_in_every_format_keep_what_one_process_keeps(tmp_path):
    for spec in generate(tmp_path, 240, 4, seed=5):
        entry = spec.params_entry()
        kept, _, records = same_in_parallel(tmp_path / spec.name, spec.name, entry, chunk=3000)
        assert sum(records.values()) == spec.records == len(kept)


@pytest.mark.parametrize("body, problem", [
    ([line("问题", "回答很长很长。")] * 20 + [b'{"prompt": "trunc'], "21: the last line stops in the middle"),
    ([b"not json\n"] * 20 + [b'{"question": "q", "reply": "a"}\n'],
     "21: the first record has the keys ['question', 'reply'], but format 'poison-mpts'"),
])
def test_a_file_problem_in_a_later_chunk_is_the_same_error_at_the_same_line(tmp_path, body, problem):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(body))
    messages = []
    for workers, chunk in ((1, None), (2, 40)):
        with pytest.raises(CqiaError) as exc:
            run(tmp_path, "t", POISON, {}, workers, chunk)
        messages.append(str(exc.value))
    assert messages[0] == messages[1] and messages[0].startswith(f"{path}:{problem}")


def test_a_first_record_of_another_layout_in_a_later_chunk_is_only_a_missing_field(tmp_path):
    body = [line("问题", "回答很长很长。")] * 10 + [b'{"question": "q", "answer": "a"}\n'] + [line("问", "答很长很长。")] * 10
    (tmp_path / "train.jsonl").write_bytes(b"".join(body))
    kept, _, _ = same_in_parallel(tmp_path, "t", POISON, chunk=40)
    assert [reason for accepted, reason, *_ in kept if not accepted] == ["missing_field"]


def test_a_json_array_problem_stops_both_runs_alike(tmp_path):
    element = '{"instruction": "下列做法正确的是？", "input": "", "output": "B"}'
    data = ("[" + ",\n".join([element] * 30) + ",\n" + '{"instruction": "下列').encode()
    (tmp_path / "part1.json").write_bytes(data)
    entry = {**PARAMS["categories"]["human_value"], "raw": ["part1.json"]}
    messages = []
    for workers, chunk in ((1, None), (2, 100)):
        with pytest.raises(CqiaError) as exc:
            run(tmp_path, "t", entry, {}, workers, chunk)
        messages.append(str(exc.value))
    assert messages[0] == messages[1] == (f"{tmp_path / 'part1.json'}:31: element 31 is cut off and the array has "
                                          "no closing ']': the file looks truncated. Download the file again "
                                          "(compare its md5 with upstream's)")


def test_chunks_are_numbered_and_name_their_place_in_the_file(tmp_path):
    """What a failed chunk's error names (cqia/ingest/ray_executor.py): its number, its bytes or elements."""
    body = b"".join(line(f"问题{i}", f"回答{i}很长很长。") for i in range(30))
    (tmp_path / "train.jsonl").write_bytes(body)
    items = RawItems(tmp_path / "train.jsonl", FORMATS["poison-mpts"])
    chunks = list(Workers(None, None, 2, 100)._chunks(Source("train.jsonl", "0" * 32), items))
    assert [chunk.number for chunk in chunks] == list(range(1, len(chunks) + 1)) and len(chunks) > 3
    spans = [tuple(int(n) for n in chunk.span.removeprefix("bytes ").split("-")) for chunk in chunks]
    assert [body[a:b + 1] for a, b in spans] == [chunk.data for chunk in chunks]
    assert spans[0][0] == 0 and spans[-1][1] == len(body) - 1

    element = '{"instruction": "下列做法正确的是？", "input": "", "output": "B"}'
    (tmp_path / "part1.json").write_text("[" + ",\n".join([element] * 10) + "]", encoding="utf-8")
    items = RawItems(tmp_path / "part1.json", FORMATS["coig-human-value"])
    chunks = list(Workers(None, None, 2, 100)._chunks(Source("part1.json", "0" * 32), items))
    assert [chunk.span for chunk in chunks] == ["elements 1-2", "elements 3-4", "elements 5-6", "elements 7-8",
                                                "elements 9-10"]


def worker_render(action, outcomes):
    """The stage's render, with `action` done in a worker process on the chunk holding line 12."""
    if os.getpid() != MAIN_PID and any(o.lineage["source"]["line"] == 12 for o in outcomes):
        action()
    return written_form(outcomes, "default", KeysBuilder("t", None))


MAIN_PID = os.getpid()


def fail_with_cqia_error():
    raise CqiaError("a rule failed", where="categories.t.rules", fix="Fix it")


def fail_with_a_bug():
    raise ZeroDivisionError("division by zero in a rule")


def kill_this_worker():
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("action, error, message", [
    (fail_with_cqia_error, CqiaError, r"^categories\.t\.rules: a rule failed\. Fix it$"),
    (fail_with_a_bug, RuntimeError, r"(?s)a worker process of the category stage failed:.*ZeroDivisionError: division"),
    (kill_this_worker, CqiaError, r"^category t: worker process [12] of 2 \(pid \d+\) was killed by SIGKILL\. If the "
                                  r"machine ran out of memory \(`dmesg` names the OOM killer\), run the stage with "
                                  r"fewer workers \(CQIA_WORKERS=1 runs it in one process\); nothing was written$"),
])
def test_a_worker_error_or_death_fails_the_run_in_the_main_process(tmp_path, action, error, message):
    (tmp_path / "train.jsonl").write_bytes(b"".join(line(f"问题{i}", f"回答{i}很长很长。") for i in range(30)))
    with pytest.raises(error, match=message):
        run(tmp_path, "t", POISON, {}, 2, 100, render=partial(worker_render, action))


@pytest.mark.parametrize("value, expected", [("", len(os.sched_getaffinity(0))), ("1", 1), ("3", 3)])
def test_the_workers_knob(value, expected):
    assert worker_count({WORKERS_ENV: value}) == expected


@pytest.mark.parametrize("value, expected", [("", "local"), ("local", "local"), ("ray", "ray"), (" ray ", "ray")])
def test_the_executor_knob(value, expected):
    assert executor_name({EXECUTOR_ENV: value}) == expected
    assert executor_name({}) == "local"


WORKERS_FIX = "Use a whole number of worker processes, e.g. 2 (1 runs the category stage in one process), or unset it " \
              "to use every core"
EXECUTOR_FIX = "Use one of ['local', 'ray'], or unset it (local: worker processes on this machine)"
CHUNK_FIX = "Use a whole number of bytes, e.g. 1048576 (the default), or unset it"


@pytest.mark.parametrize("value, expected", [("", 1 << 20), ("4096", 4096), (" 40 ", 40)])
def test_the_chunk_knob(value, expected):
    assert chunk_bytes({CHUNK_ENV: value}) == expected


@pytest.mark.parametrize("knob, read, value, fix", [
    *[(WORKERS_ENV, worker_count, value, WORKERS_FIX) for value in ("0", "two", "-1")],
    *[(EXECUTOR_ENV, executor_name, value, EXECUTOR_FIX) for value in ("spark", "Ray", "fork")],
    *[(CHUNK_ENV, chunk_bytes, value, CHUNK_FIX) for value in ("0", "1MiB", "-5")],
])
def test_a_bad_knob_is_named_with_the_fix(knob, read, value, fix):
    with pytest.raises(CqiaError) as exc:
        read({knob: value})
    assert str(exc.value) == f"{knob} is {value!r}. {fix}"


# --- the stage entry ------------------------------------------------------------------

def stage_args(tmp: Path, name: str, raw_dir: Path, params: Path = ROOT / "params.yaml") -> list[str]:
    suite = load_yaml(params)["categories"][name]["suite"]
    out = tmp / name
    return ["--category", name, "--params", str(params), "--raw-dir", str(raw_dir),
            "--reviews", f"data/reviews/{name}.jsonl" if raw_dir.parent == Path("data/raw") else str(tmp / "reviews.jsonl"), "--schema", str(ROOT / "schemas/record.schema.json"),
            "--suite", str(ROOT / "expectations" / f"{suite}.json"), "--accepted", str(out / "accepted.jsonl.zst"),
            "--lineage", str(out / "lineage.jsonl.zst"), "--rejects", str(out / "rejects.jsonl"), "--keys", str(out / "keys.parquet"),
            "--metrics", str(out / "metrics.json")]


def test_the_stage_in_chunks_writes_the_bytes_dvc_lock_records(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "2")
    monkeypatch.setenv(CHUNK_ENV, "2000")
    monkeypatch.chdir(ROOT)     # lineage names the raw file as dvc.yaml does: data/raw/<category>/<file>
    name = "human_value"        # two raw files, one a JSON array, and review decisions
    outs = YAML(typ="safe").load((ROOT / "dvc.lock").read_text(encoding="utf-8"))["stages"][f"category@{name}"]["outs"]
    assert main(stage_args(tmp_path, name, Path("data/raw") / name)) == 0
    for out in outs:
        assert hashlib.md5((tmp_path / out["path"].removeprefix("data/stages/")).read_bytes()).hexdigest() == out["md5"]
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics == json.loads((ROOT / "data/stages" / name / "metrics.json").read_text())


def subprocess_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def small_category(tmp: Path, body: bytes) -> list[str]:
    raw = tmp / "raw" / "t"
    raw.mkdir(parents=True)
    (raw / "train.jsonl").write_bytes(body)
    (tmp / "reviews.jsonl").write_bytes(b"")
    params = tmp / "params.yaml"
    params.write_text(json.dumps({"categories": {"t": {**POISON, "raw": ["train.jsonl"], "suite": "default"}}},
                                 ensure_ascii=False), encoding="utf-8")
    return stage_args(tmp, "t", raw, params)


def test_a_file_problem_in_a_later_chunk_is_one_line_on_stderr(tmp_path):
    args = small_category(tmp_path, b"".join([line("问题", "回答很长很长。")] * 20 + [b'{"prompt": "trunc']))
    errors = []
    for workers in ("1", "2"):
        proc = subprocess.run([sys.executable, "-m", "stages.category", *args], cwd=ROOT, capture_output=True,
                              text=True, env=subprocess_env(**{WORKERS_ENV: workers, CHUNK_ENV: "40"}))
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        errors.append(proc.stderr)
    assert errors[0] == errors[1]
    assert errors[0].startswith(f"error: {tmp_path / 'raw/t/train.jsonl'}:21: the last line stops")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_a_parallel_stage_killed_mid_write_leaves_no_worker_behind(tmp_path):
    body = b"".join(line(f"第{i}个问题：怎样把一件小事坚持做下去？", f"回答{i}：先定一个很小的目标，每天完成，记录下来。" * 3)
                    for i in range(30_000))
    args = small_category(tmp_path, body)
    env = subprocess_env(**{WORKERS_ENV: "2", CHUNK_ENV: "65536"})
    proc = subprocess.Popen([sys.executable, "-m", "stages.category", *args], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        mid_write(tmp_path / "t", proc)
        helpers = children(proc.pid)
        assert len(helpers) == 2                    # two workers (its gate runs in the GX server's child)
    finally:
        proc.kill()                                 # the stage alone, as the OOM killer would
        proc.wait()
        proc.stderr.close()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
              for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in helpers if Path(f"/proc/{pid}").exists()
                and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
    assert not (tmp_path / "t" / "accepted.jsonl.zst").exists()
