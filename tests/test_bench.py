"""The benchmark's generator and runner (bench/): determinism, formats, labels, timing arithmetic."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bench.generate import FORMATS, append_records, generate, plan
from bench.run import Measured, Proc, baseline, breakdown, pick_incremental, process_peaks, ran_stages, stage_of
from cqia.dedup.keys import dedup_key
from cqia.gates.schema import RecordSchema
from cqia.ingest.config import checked_category
from cqia.ingest.formats import FORMAT_NAMES
from cqia.ingest.formats import FORMATS as FORMATS_BY_NAME
from cqia.ingest.judge import Processor, Source
from cqia.ingest.raw import RawItems

ROOT = Path(__file__).resolve().parent.parent


def digest_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_plan_splits_records_over_categories_in_every_format():
    specs = plan(100_000, 12)
    assert sum(s.records for s in specs) == 100_000
    assert Counter(s.format for s in specs) == {"cqia-jsonl": 8, "poison-mpts": 2, "coig-human-value": 2}
    assert set(FORMATS) == set(FORMAT_NAMES)
    assert [s.name for s in specs[:4]] == ["cqia_01", "poison_02", "cqia_03", "human_value_04"]
    assert specs[0].records > 3 * specs[-1].records > 0
    assert pick_incremental(specs).name == "cqia_06"
    with pytest.raises(ValueError, match=r"^--records must be at least 10 per category \(120 for 12\)$"):
        plan(100, 12)


def test_generate_is_deterministic_per_seed(tmp_path):
    a = generate(tmp_path / "a", 240, 4, seed=7)
    generate(tmp_path / "b", 240, 4, seed=7)
    generate(tmp_path / "c", 240, 4, seed=8)
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    assert digest_tree(tmp_path / "a") != digest_tree(tmp_path / "c")
    assert [s.summary() for s in a] == [s.summary() for s in generate(tmp_path / "d", 240, 4, seed=7)]
    part1 = (tmp_path / "a" / "human_value_04" / "human_value_alignment_instructions_part1.json").read_bytes()
    assert part1.startswith(b"\xef\xbb\xbf[\n    {\n        \"instruction\": ")
    part2 = (tmp_path / "a" / "human_value_04" / "human_value_alignment_instructions_part2.json").read_bytes()
    assert part2.startswith(b'{"textbox_q_instruction": ')


def test_generated_records_are_rejected_with_the_reason_they_were_generated_for(tmp_path):
    """Each bad kind the generator labels ends up as that reason code in the category stage's core."""
    specs = generate(tmp_path, 2400, 4, seed=3)
    schema = RecordSchema.from_file(ROOT / "schemas" / "record.schema.json")
    accepted: list[dict] = []
    for spec in specs:
        category = checked_category(spec.name, spec.params_entry())
        processor = Processor(category, schema, {})
        reasons: Counter[str] = Counter()
        n = 0
        for name in spec.raw_files:
            path = tmp_path / spec.name / name
            items = RawItems(path, FORMATS_BY_NAME[spec.format])
            for outcome in processor.process(Source(path.as_posix(), "-"), items):
                n += 1
                if outcome.accepted:
                    accepted.append(outcome.record)
                else:
                    reasons[outcome.reason] += 1
        assert n == spec.records, spec.name
        for kind in ("invalid_json", "missing_field", "empty_output"):
            assert reasons[kind] == spec.kinds.get(kind, 0), (spec.name, kind, reasons)
        assert reasons["schema_invalid"] <= spec.kinds.get("schema_invalid", 0)
    # exact, padded and cross-category copies are exact duplicates once normalised; near ones are not
    copies = sum(s.kinds.get(k, 0) for s in specs for k in ("exact_duplicate", "padded_duplicate", "cross_duplicate"))
    duplicates = len(accepted) - len({dedup_key(r) for r in accepted})
    assert 0.9 * copies <= duplicates <= copies


def test_baseline_reads_and_writes_every_record(tmp_path):
    specs = generate(tmp_path / "raw", 240, 4, seed=1)
    assert baseline(tmp_path / "raw", tmp_path / "out") == 240
    written = tmp_path / "out" / "poison_02" / "train.jsonl"
    source = tmp_path / "raw" / "poison_02" / "train.jsonl"
    assert len(written.read_bytes().splitlines()) == specs[1].records
    first = orjson.loads(source.read_bytes().split(b"\n", 1)[0])
    assert orjson.loads(written.read_bytes().split(b"\n", 1)[0]) == first


def test_append_records_adds_lines_to_a_json_lines_category(tmp_path):
    specs = generate(tmp_path, 240, 4, seed=1)
    path = tmp_path / "cqia_03" / "train.jsonl"
    before = path.read_bytes().count(b"\n")
    added = append_records(specs[2], tmp_path / "cqia_03", 25, seed=99)
    assert path.read_bytes().count(b"\n") == before + 25 and added > 0
    assert all(isinstance(orjson.loads(l), dict) for l in path.read_bytes().splitlines()[before:])
    with pytest.raises(ValueError, match="use a JSON Lines category"):
        append_records(specs[3], tmp_path / "human_value_04", 5, seed=99)


def test_breakdown_splits_a_repro_into_stage_commands_and_dvc_time():
    lines = [(0.5, "Running stage 'category@a':"), (0.5, "> python -m stages.category --category a"),
             (3.0, ""), (3.25, "Running stage 'merge':"), (5.0, "Use `dvc push` ...")]
    procs = [Proc(1, ["python", "dvc", "repro"], 100.0, 105.5, 80 * 1024 * 1024),
             Proc(2, ["python", "-m", "stages.category", "--category", "a"], 100.5, 102.5, 300 * 1024 * 1024),
             Proc(3, ["python", "-m", "stages.merge", "--params", "p"], 103.25, 105.0, 200 * 1024 * 1024),
             # the category stage's Great Expectations helper: not a stage, its peak is the stage's helper's
             Proc(4, ["python", "-c", "from cqia.gates.gx_worker import serve; serve(5)"], 100.6, 102.4,
                  250 * 1024 * 1024, ppid=2, peak_uss=240 * 1024 * 1024),
             # its worker processes (cqia/ingest/parallel.py): forked, so with the stage's command line; neither
             # a stage nor its gate's helper (larger than the helper here, so counting it would show)
             Proc(7, ["python", "-m", "stages.category", "--category", "a"], 101.0, 102.4, 260 * 1024 * 1024, ppid=2,
                  peak_uss=250 * 1024 * 1024),
             # the Great Expectations server (detached: ppid 1) and its child that ran merge's gate
             Proc(5, ["python", "-P", "-c", "from cqia.gates.gx_server import serve; serve()"], 103.3, 105.5,
                  220 * 1024 * 1024, ppid=1, role="gx server"),
             Proc(6, ["python", "-P", "-c", "from cqia.gates.gx_server import serve; serve()"], 103.4, 104.9,
                  230 * 1024 * 1024, ppid=5, role="gx child", serves=3, peak_uss=20 * 1024 * 1024)]
    m = Measured(["dvc", "repro"], 0, 5.5, 1.0, 0.5, 300.0, 380.0, lines, procs, started=100.0,
                 gx_server_started=True)
    assert ran_stages(m) == ["category@a", "merge"]
    assert stage_of(["sh", "-c", "python -m stages.merge"]) is None
    assert stage_of(["python", "-m", "stages.report", "--params", "p"]) == "report"
    assert stage_of(["python", "-m", "pytest"]) is None
    assert breakdown(m) == [
        {"stage": "dvc: start, status", "command_s": 0.0, "dvc_s": 0.5, "peak_rss_mb": None},
        {"stage": "category@a", "command_s": 2.0, "dvc_s": 0.75, "peak_rss_mb": 300.0, "helper_peak_rss_mb": 250.0,
         "helper_peak_uss_mb": 240.0},
        {"stage": "merge", "command_s": 1.75, "dvc_s": 0.5, "peak_rss_mb": 200.0, "helper_peak_rss_mb": 230.0,
         "helper_peak_uss_mb": 20.0},
    ]
    assert m.as_dict()["gx_server"] == {"started": True, "peak_rss_mb": 220.0}
    assert process_peaks(m) == {
        "category@a": {"processes": 1, "peak_rss_mb": 300.0},
        "category@ worker": {"processes": 1, "peak_rss_mb": 260.0},
        "GX gate run (server's child)": {"processes": 2, "peak_rss_mb": 250.0},
        "GX server": {"processes": 1, "peak_rss_mb": 220.0},
        "merge": {"processes": 1, "peak_rss_mb": 200.0},
        "dvc": {"processes": 1, "peak_rss_mb": 80.0}}


def test_the_duplication_heavy_corpus_has_near_duplicate_clusters_of_2_to_50(tmp_path):
    specs = generate(tmp_path / "a", 3000, 3, seed=4, clusters=0.3)
    records = sum(s.records for s in specs)
    members = sum(s.kinds["cluster"] for s in specs)
    assert 0.25 < members / records < 0.35
    assert all(2 <= s.clusters["max_size"] <= 50 and s.clusters["started"] > 10 for s in specs)
    assert digest_tree(tmp_path / "a") == digest_tree(generate(tmp_path / "b", 3000, 3, seed=4, clusters=0.3)
                                                      and tmp_path / "b")
    lines = (tmp_path / "a" / "cqia_01" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert any("答：" in line or "以上仅供参考" in line for line in lines)      # templated members
    assert "clusters" not in generate(tmp_path / "c", 240, 2, seed=4)[0].summary()
    with pytest.raises(ValueError, match=r"^--clusters must be a share"):
        generate(tmp_path / "d", 240, 2, clusters=1.5)


@pytest.mark.e2e
def test_run_suite_times_every_scenario_in_a_bench_repo(tmp_path):
    from bench.run import run_suite, table

    results = run_suite(240, 2, seed=0, out=tmp_path, noops=1, log=lambda *_: None)
    assert results["records"] == 240 and results["released"] > 200
    ran = results["incremental"]["ran"]
    assert [s for s in ran if s.startswith("category@")] == [f"category@{results['incremental']['changed_category']}"]
    assert [s for s in ran if not s.startswith("category@")] == \
        ["dedup", f"publish@{results['incremental']['changed_category']}", "merge", "report"]
    assert [r["stage"] for r in results["full"]["stages"]] == \
        ["dvc: start, status", "category@cqia_01", "category@poison_02", "dedup", "publish@cqia_01",
         "publish@poison_02", "merge", "report"]
    assert "dedup" in results["exact_only"]["ran"]  # at 240 records the sketching time is within the noise
    assert results["full"]["processes"]["GX server"]["processes"] == 1
    assert results["full"]["peak_rss_mb"] > results["baseline"]["peak_rss_mb"] > 0
    # each timed run starts from no GX server (the suite has a server directory of its own)
    assert all(results[run]["gx_server"]["started"] for run in ("full", "incremental", "exact_only"))
    assert results["full"]["gx_server"]["peak_rss_mb"] > 0
    # RSS is sampled: on a loaded machine a 240-record gate run can end between two samples, so at
    # least one category's gate process is seen, and every one seen has its own memory under its RSS
    seen = [r for r in results["full"]["stages"] if r["stage"].startswith("category@") and r["helper_peak_rss_mb"]]
    assert seen and all(r["helper_peak_rss_mb"] > r["helper_peak_uss_mb"] > 0 for r in seen)
    assert (tmp_path / "results-240.json").is_file() and not (tmp_path / "repo-240").exists()
    assert "full dvc repro (all gates, near-dup on)" in table(results)


@pytest.mark.process
def test_the_bench_repo_can_use_another_dvc_cache_type(tmp_path):
    from bench.run import build_repo, run_name

    repo = build_repo(tmp_path / "r", 24, 2, cache_type="hardlink")
    assert repo.dvc("config", "cache.type").stdout.strip() == "hardlink"
    assert run_name(1000, "hardlink") == "1000-hardlink" and run_name(1000, "reflink,copy") == "1000-reflink-copy"
    assert run_name(1000, None) == "1000"
    assert run_name(1000, None, 0.3) == "1000-clusters0.3"


@pytest.mark.e2e
def test_profile_and_stage_cpu_measure_a_stage_of_a_built_bench_repo(tmp_path, capsys):
    """bench.profile writes its profile although a stage ends with os._exit; bench.stage_cpu splits the CPU."""
    from bench import profile, stage_cpu
    from bench.run import build_repo

    repo = build_repo(tmp_path / "r", 240, 2)
    repo.dvc("repro")
    out = tmp_path / "category.prof"
    assert profile.main(["--repo", str(repo.path), "--stage", "category@cqia_01", "--out", str(out), "--top", "5"]) == 0
    shown = capsys.readouterr().out
    assert out.stat().st_size > 0 and "cqia/ingest/stage.py" in shown
    assert stage_cpu.main(["--repo", str(repo.path), "--stage", "category@cqia_01", "--workers", "1", "2"]) == 0
    rows = capsys.readouterr().out.splitlines()
    one, two = (row.split() for row in rows[-2:])
    assert one[0] == "1" and two[0] == "2"
    assert float(one[2]) > 0 and float(one[3]) == 0.0      # one process: nothing in worker processes
    assert repo.dvc("status", "-q", check=False).returncode == 0   # the stage rewrote the same bytes
