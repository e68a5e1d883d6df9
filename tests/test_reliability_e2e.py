"""Faults under the real `dvc repro`: a stage killed mid-write leaves nothing half-written in place."""

import json
import os
import signal
import subprocess

import pytest

from conftest import BIN, mid_write, more_zhihu_records, release_lineage
from cqia.common.fileio import read_jsonl

pytestmark = pytest.mark.e2e


def staged(directory):
    return sorted(p for p in directory.glob(".*.tmp"))


def test_sigkill_mid_write_leaves_no_partial_output_and_the_next_repro_recovers(repo):
    out = repo.file("data/stages/zhihu")
    raw = more_zhihu_records(repo, 6_000)
    proc = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=repo.path, env=repo.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        mid_write(out, proc)                         # the stage is writing: its temporaries hold compressed bytes
    finally:
        os.killpg(proc.pid, signal.SIGKILL)          # dvc and the stage, as a power cut or the OOM killer would
        proc.wait()
    # ... and none of it is in place: no output of the killed stage, nothing downstream
    for name in ("accepted.jsonl.zst", "lineage.jsonl.zst", "rejects.jsonl", "metrics.json"):
        assert not (out / name).exists(), name
    assert not repo.file("data/release").exists()
    assert staged(out)

    # the next repro sweeps the temporaries and builds everything
    proc = repo.dvc("repro")
    assert "Running stage 'category@zhihu'" in proc.stdout
    assert staged(out) == [] and staged(repo.file("data/stages")) == []
    metrics = json.loads((out / "metrics.json").read_text())
    accounting = metrics["gates"]["accounting"]
    assert accounting["success"] and accounting["raw"] == accounting["accepted"] + accounting["rejected"] == raw
    assert len(list(read_jsonl(out / "accepted.jsonl.zst"))) == metrics["accepted"]
    assert len((out / "rejects.jsonl").read_bytes().splitlines()) == metrics["rejected"]
    # every raw record is in the release's lineage, released or rejected with a reason
    lineage = release_lineage(repo.file("data/release"))
    assert len(lineage) == sum(json.loads(repo.file(f"data/stages/{c}/metrics.json").read_text())["raw"]
                               for c in ("100poison", "human_value", "zhihu"))
    assert all(e["status"] == "released" or e["reason"] for e in lineage)
    # the byte-identical copy in the 100poison sample got its own id, and merge names the kept one
    released = {e["id"] for e in lineage if e["status"] == "released"}
    copies = [e for e in lineage if e["category"] == "100poison" and e.get("reason", "").startswith("duplicate_of:")]
    assert copies and all(e["reason"].split(":", 1)[1] in released for e in copies)
    assert repo.dvc("status", "-q", check=False).returncode == 0
