"""The category stage on a real Ray cluster (CQIA_EXECUTOR=ray) writes the bytes a local run writes.

One Ray head per module (tests.sandbox.ray_head): `ray start --head --block` on
127.0.0.1 in a temporary directory of its own, with 2 CPUs and no dashboard,
stopped at the end by ending that process and its process group (`ray stop`
would stop every Ray cluster of the machine). No mocks: the stage is the
driver, its chunks are Ray tasks run by the head's worker processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.generate import generate
from cqia.common.errors import CqiaError
from cqia.common.params import load_yaml
from cqia.ingest.executor import EXECUTOR_ENV
from cqia.ingest.parallel import CHUNK_ENV, WORKERS_ENV
from cqia.ingest.ray_executor import FAULT_ENV
from stages.category import main
from tests import sandbox

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
PARAMS = load_yaml(ROOT / "params.yaml")
OUTPUTS = ("accepted.jsonl.zst", "lineage.jsonl.zst", "rejects.jsonl", "keys.parquet", "metrics.json")


@pytest.fixture(scope="module")
def ray_head():
    """RAY_ADDRESS of this module's own Ray head (2 CPUs); the environment points the stage at it."""
    with sandbox.ray_head(cpus=2) as head, pytest.MonkeyPatch.context() as patch:
        for name, value in {**sandbox.RAY_ENV, "RAY_ADDRESS": head.address}.items():
            patch.setenv(name, value)
        yield head.address


def stage_args(out: Path, name: str, raw_dir: Path, params: Path, reviews: Path) -> list[str]:
    suite = load_yaml(params)["categories"][name]["suite"]
    return ["--category", name, "--params", str(params), "--raw-dir", str(raw_dir), "--reviews", str(reviews),
            "--schema", str(ROOT / "schemas/record.schema.json"),
            "--suite", str(ROOT / "expectations" / f"{suite}.json"),
            *[arg for output in OUTPUTS for arg in (f"--{output.split('.')[0]}", str(out / output))]]


def outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def run_stage(monkeypatch, args: list[str], executor: str, chunk: int | None = None) -> None:
    monkeypatch.setenv(EXECUTOR_ENV, executor)
    monkeypatch.setenv(WORKERS_ENV, "2")
    if chunk:
        monkeypatch.setenv(CHUNK_ENV, str(chunk))
    else:
        monkeypatch.delenv(CHUNK_ENV, raising=False)
    assert main(args) == 0


def sample_args(tmp: Path, name: str, executor: str) -> list[str]:
    # relative paths, as dvc.yaml passes them: lineage names the raw file data/raw/<category>/<file>
    return stage_args(tmp / executor, name, Path("data/raw") / name, Path("params.yaml"),
                      Path(f"data/reviews/{name}.jsonl"))


@pytest.mark.parametrize("name", list(PARAMS["categories"]))
def test_every_sample_category_on_ray_writes_the_local_bytes(ray_head, tmp_path, monkeypatch, name):
    monkeypatch.chdir(ROOT)
    run_stage(monkeypatch, sample_args(tmp_path, name, "local"), "local", chunk=2000)
    # chunks of 2000 bytes: every sample file is several Ray tasks, and byte-identical copies,
    # review decisions and JSON array elements fall into other chunks than the records they concern
    run_stage(monkeypatch, sample_args(tmp_path, name, "ray"), "ray", chunk=2000)
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated 50,000-record cqia-jsonl category (~120 MB, bench/generate.py), and its params."""
    tmp = tmp_path_factory.mktemp("generated")
    (spec,) = generate(tmp / "raw", 50_000, 1, seed=3)
    params = tmp / "params.yaml"
    params.write_text(json.dumps({"categories": {spec.name: spec.params_entry()}, "neardup": PARAMS["neardup"]},
                                 ensure_ascii=False), encoding="utf-8")
    (tmp / "reviews.jsonl").write_bytes(b"")
    return tmp, spec


def test_a_generated_50k_category_on_ray_writes_the_local_bytes(ray_head, generated, tmp_path, monkeypatch):
    base, spec = generated
    args = {executor: stage_args(tmp_path / executor, spec.name, base / "raw" / spec.name, base / "params.yaml",
                                 base / "reviews.jsonl") for executor in ("local", "ray")}
    run_stage(monkeypatch, args["local"], "local")      # 1 MiB chunks: ~120 of them
    run_stage(monkeypatch, args["ray"], "ray")
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
    metrics = json.loads((tmp_path / "ray" / "metrics.json").read_bytes())
    assert metrics["raw"] == spec.records == metrics["accepted"] + metrics["rejected"]


def test_a_task_that_fails_ends_the_stage_naming_the_file_and_chunk(ray_head, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv(FAULT_ENV, "2:raise")
    with pytest.raises(CqiaError) as exc:
        run_stage(monkeypatch, sample_args(tmp_path, "zhihu", "ray"), "ray", chunk=2000)
    assert re.fullmatch(r"data/raw/zhihu/train\.jsonl: chunk 2 \(bytes \d+-\d+\): a Ray task failed: "
                        r"ZeroDivisionError: CQIA_TEST_RAY_FAULT: a fault in chunk 2\. Run the stage again; if it "
                        r"fails again, run it on this machine \(unset CQIA_EXECUTOR\) for the traceback; nothing "
                        r"was written", str(exc.value)), str(exc.value)
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == []


def test_a_killed_worker_ends_the_stage_with_one_line_and_a_rerun_completes(ray_head, tmp_path, monkeypatch):
    args = sample_args(tmp_path, "human_value", "ray")
    pid_file = tmp_path / "worker.pid"
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{EXECUTOR_ENV: "ray", CHUNK_ENV: "2000",
                                                     FAULT_ENV: f"2:hold:{pid_file}"})
    stage = subprocess.Popen([sys.executable, "-m", "stages.category", *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()):
            assert stage.poll() is None, stage.communicate()
            assert time.monotonic() < deadline, "no task of chunk 2 started in 120 s"
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"), "not a Ray worker process"
        os.kill(pid, signal.SIGKILL)
        _, stderr = stage.communicate(timeout=120)
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.communicate()
    assert stage.returncode == 1
    assert re.fullmatch(r"error: data/raw/human_value/human_value_alignment_instructions_part1\.json: chunk 2 "
                        r"\(elements \d+-\d+\): the Ray worker process judging it died \(killed, or out of memory\)\. "
                        r"Run the stage again; if it dies again, look for the OOM killer in `dmesg` on its node and "
                        r"in Ray's logs \(`ray logs`\); nothing was written\n", stderr), stderr
    assert list((tmp_path / "ray").iterdir()) == []              # no output, and no temporary left

    monkeypatch.chdir(ROOT)
    run_stage(monkeypatch, args, "ray", chunk=2000)               # the rerun completes ...
    run_stage(monkeypatch, sample_args(tmp_path, "human_value", "local"), "local", chunk=2000)
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")   # ... with the local bytes


def test_no_cluster_at_the_address_is_one_line_at_once(tmp_path, monkeypatch):
    """Ray itself would wait minutes for an address that does not answer."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"         # closed again: nothing listens there
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RAY_ADDRESS", address)
    started = time.monotonic()
    with pytest.raises(CqiaError) as exc:
        run_stage(monkeypatch, sample_args(tmp_path, "zhihu", "ray"), "ray", chunk=2000)
    assert time.monotonic() - started < 30
    assert str(exc.value) == (f"CQIA_EXECUTOR=ray: cannot join the Ray cluster at '{address}' ([Errno 111] Connection "
                              "refused). Start one (`ray start --head`) and set RAY_ADDRESS to its address "
                              "(<head>:6379), or unset CQIA_EXECUTOR to use this machine's cores")
    assert list((tmp_path / "ray").iterdir()) == []
