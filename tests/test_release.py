"""The release library: versions, params editing, tree checks, dvc.lock, verify and the tag message."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from conftest import ROOT
from cqia.cli import cli
from cqia.common.errors import CqiaError
from cqia.registry import releases as rel

FORM = "Use v<major>.<minor>[.<patch>], e.g. v0.2 or v1.0.1"


# --------------------------------------------------------------------------- versions and tags


@pytest.mark.parametrize("text, parsed", [("v0.1", (0, 1, 0)), ("v1.0.2", (1, 0, 2)), ("v10.20", (10, 20, 0))])
def test_versions(text, parsed):
    assert rel.parse_version(text) == parsed


@pytest.mark.parametrize("text", ["0.1", "v1", "v0.1-rc1", "v01.2", "V0.1", "v0.1.2.3", "", "v0.1 ", "v0.1\n"])
def test_malformed_versions_are_refused_with_the_form(text):
    with pytest.raises(CqiaError) as err:
        rel.parse_version(text, where=f"release {text}")
    assert str(err.value) == f"release {text}: version {text!r} is malformed. {FORM}"


def test_a_tag_that_names_the_same_version_conflicts():
    tags = ["v0.1", "v0.2", "latest", "v0.3-rc1"]
    assert rel.conflicting_tag(tags, "v0.1") == "v0.1"
    assert rel.conflicting_tag(tags, "v0.1.0") == "v0.1"
    assert rel.conflicting_tag(["v0.1.0"], "v0.1") == "v0.1.0"
    assert rel.conflicting_tag(tags, "v0.3") is None


def test_the_previous_release_is_the_highest_lower_version_in_numeric_order():
    tags = ["v0.1", "v0.2", "v0.10", "v0.9", "v1.0", "nightly"]
    assert rel.previous_release(tags, "v0.11") == "v0.10"
    assert rel.previous_release(tags, "v0.1.1") == "v0.1"  # a patch of an old line compares with that line
    assert rel.previous_release(tags, "v2.0") == "v1.0"
    assert rel.previous_release(tags, "v0.1") is None


# --------------------------------------------------------------------------- params.yaml

PARAMS = """\
# The release.
release:
  name: COIG-CQIA   # shown in the card
  version: 'v0.1'   # bumped by `cqia release`
  description: >
    Folded text
    over two lines.
gates: {chunk_rows: 50000}
categories:
  zhihu:
    rules: {min_chars: {output: 20}}   # flow style stays flow style
"""


def test_set_version_replaces_only_the_scalar():
    new = rel.set_version_text(PARAMS, "v0.2")
    assert new == PARAMS.replace("version: 'v0.1'   #", "version: v0.2   #")


def test_set_version_on_the_real_params_changes_one_line():
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    new = rel.set_version_text(text, "v9.8.7")
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][1].strip() == "version: v9.8.7"
    assert len(text.splitlines()) == len(new.splitlines())


def test_set_version_errors_name_the_file_and_the_fix():
    with pytest.raises(CqiaError) as err:
        rel.set_version_text("release:\n  name: x\n", "v0.2")
    assert str(err.value) == "params.yaml: release.version is missing. Add `version: v0.1` under `release:`"
    with pytest.raises(CqiaError) as err:
        rel.set_version_text("release:\n  version:\n    - v0.1\n", "v0.2")
    assert str(err.value) == ("params.yaml:3: release.version is not a plain string. "
                              "Write it on one line, e.g. `version: v0.1`")
    with pytest.raises(CqiaError) as err:
        rel.set_version_text("release:\n  version: v0.1 final # note\n", "v0.2")
    assert str(err.value) == ("params.yaml:2: release.version 'v0.1 final' cannot be replaced on its own. "
                              "Write it as one word, e.g. `version: v0.1`")
    with pytest.raises(CqiaError) as err:
        rel.set_version_text("release: [\n", "v0.2")
    assert str(err.value).startswith("params.yaml:2: not valid YAML (")


def test_params_that_differ_in_the_version_alone():
    assert rel.params_differ_only_in_version(PARAMS, rel.set_version_text(PARAMS, "v0.2"))
    assert not rel.params_differ_only_in_version(PARAMS, PARAMS.replace("50000", "40000"))
    assert not rel.params_differ_only_in_version(PARAMS, "release: [")


# --------------------------------------------------------------------------- the working tree


def test_porcelain_paths_keep_spaces_and_both_sides_of_a_rename():
    out = " M params.yaml\0?? notes on v0.2.txt\0R  data/new name.json\0data/old name.json\0 D gone.txt\0"
    assert rel.porcelain_paths(out) == ["params.yaml", "notes on v0.2.txt", "data/new name.json",
                                        "data/old name.json", "gone.txt"]
    assert rel.porcelain_paths("") == []


def test_what_repro_writes_does_not_make_the_tree_dirty():
    build = rel.build_files([("data/stages/zhihu/accepted.jsonl", True), ("data/stages/zhihu/metrics.json", False),
                             ("data/release", True), ("data/release_metrics.json", False),
                             ("data/reports/plots/domain", False)])
    assert build.gitignores == {"data/stages/zhihu/.gitignore", "data/.gitignore"}
    assert build.uncached == {"data/stages/zhihu/metrics.json", "data/release_metrics.json",
                              "data/reports/plots/domain"}
    assert "data/reports/plots/domain/all.csv" in build  # inside an uncached directory output
    assert "data/reports/plots/domain.csv" not in build and "data/release/README.md" not in build
    changed = ["dvc.lock", "data/.gitignore", "data/stages/zhihu/metrics.json", "params.yaml"]
    assert rel.uncommitted_changes(changed, build, params_version_only=True) == []
    assert rel.uncommitted_changes(changed, build, params_version_only=False) == ["params.yaml"]
    assert rel.uncommitted_changes(changed + ["data/raw/xhs/train.jsonl", "stages/.gitignore"], build, True) == \
        ["data/raw/xhs/train.jsonl", "stages/.gitignore"]


def test_name_some():
    assert rel.name_some(["a", "b"]) == "a, b"
    assert rel.name_some(["a", "b", "c", "d", "e"]) == "a, b, c and 2 more"


# --------------------------------------------------------------------------- dvc.lock

LOCK = {"schema": "2.0", "stages": {
    "category@zhihu": {"outs": [{"path": "data/stages/zhihu/accepted.jsonl", "md5": "aa", "size": 3}]},
    "publish@zhihu": {"outs": [{"path": "data/release/zhihu", "hash": "md5", "md5": "0123.dir", "nfiles": 2},
                               {"path": "data/release/lineage/zhihu", "hash": "md5", "md5": "4567.dir"},
                               {"path": "data/publish/zhihu.json", "md5": "cc"}]},
    "merge": {"outs": [{"path": "data/release/manifest.json", "md5": "dd", "size": 10},
                       {"path": "data/release/README.md", "md5": "ee", "size": 10}],
              "metrics": [{"path": "data/release_metrics.json", "md5": "bb", "size": 1}]},
}}


def test_lock_outs_are_the_outputs_in_the_release_directory():
    assert rel.lock_outs(LOCK, "data/release") == [
        rel.LockOut("README.md", "ee", "merge"), rel.LockOut("lineage/zhihu", "4567.dir", "publish@zhihu"),
        rel.LockOut("manifest.json", "dd", "merge"), rel.LockOut("zhihu", "0123.dir", "publish@zhihu")]
    assert rel.stages_of(["zhihu/train.jsonl"], rel.lock_outs(LOCK, "data/release")) == ["publish@zhihu"]
    assert rel.stages_of([], rel.lock_outs(LOCK, "data/release")) == ["merge", "publish@zhihu"]


def test_advice_names_only_stages_dvc_yaml_has():
    # douban was removed from params.yaml by hand: DVC keeps its entries in dvc.lock
    lock = {"stages": {**LOCK["stages"], "publish@douban": {"outs": [
        {"path": "data/release/douban", "md5": "89ab.dir"}, {"path": "data/release/lineage/douban", "md5": "cdef.dir"}]}}}
    outs, stale = rel.split_stale(rel.lock_outs(lock, "data/release"), ["category@zhihu", "publish@zhihu", "merge"])
    assert [out.stage for out in outs] == ["merge", "publish@zhihu", "merge", "publish@zhihu"]
    assert [out.path for out in stale] == ["douban", "lineage/douban"]
    restore = "restore the release with `dvc checkout --force {stages}`"
    assert rel.remedy(["zhihu/train.jsonl"], outs, stale, restore) == \
        "restore the release with `dvc checkout --force publish@zhihu`"
    assert rel.remedy(["douban/train.jsonl", "lineage/douban/index.parquet"], outs, stale, restore) == \
        "run `cqia category remove douban` (category douban is gone from params.yaml; it deletes what the category left)"
    assert rel.remedy(["stray.txt", "zhihu/train.jsonl"], outs, stale, restore) == \
        ("restore the release with `dvc checkout --force publish@zhihu`; "
         "delete stray.txt (no stage in dvc.yaml writes it), then run `dvc repro`")
    assert rel.remedy([], outs, stale, restore) == "restore the release with `dvc checkout --force merge publish@zhihu`"


def test_lock_outs_errors():
    with pytest.raises(CqiaError) as err:
        rel.lock_outs(LOCK, "data/elsewhere")
    assert str(err.value) == "dvc.lock: no stage has an output in data/elsewhere. Run `dvc repro` to build the release"
    broken = {"stages": {"merge": {"outs": [{"path": "data/release/README.md"}]}}}
    with pytest.raises(CqiaError) as err:
        rel.lock_outs(broken, "data/release")
    assert str(err.value) == ("dvc.lock: stages.merge: output data/release/README.md has no hash. "
                              "Run `dvc repro` to rebuild the release")
    with pytest.raises(CqiaError):
        rel.lock_outs(None, "data/release")


def test_listing_md5_is_dvcs_directory_hash():
    # DVC's .dir object: the JSON list of {md5, relpath} sorted by path, keys sorted; its md5 names it
    listing = {"zhihu/train.jsonl": "6fa64d7c199a" + "0" * 20, "README.md": "fb6ac9604b21" + "1" * 20}
    body = json.dumps(sorted(({"md5": m, "relpath": r} for r, m in listing.items()), key=lambda e: e["relpath"]),
                      sort_keys=True)
    assert rel.listing_md5(listing) == hashlib.md5(body.encode()).hexdigest() + ".dir"


def test_stage_names_skip_a_dvc_file_stage():
    """A `.dvc` file (`dvc add`, `dvc import` of a raw file) is a stage with no name; it is not dvc.yaml's."""
    repo = SimpleNamespace(index=SimpleNamespace(stages=[SimpleNamespace(name="merge"), SimpleNamespace(outs=[])]))
    assert rel.stage_names(repo) == {"merge"}


def test_an_unknown_remote_is_one_line_naming_the_ones_there():
    with pytest.raises(CqiaError) as error:
        rel.require_remote({"store": "~/x", "s3": "s3://b/p"}, "nowhere", "--remote")
    assert str(error.value) == ("--remote: DVC remote 'nowhere' is not configured. Available remotes: s3, store "
                                "(`dvc remote list`)")


# --------------------------------------------------------------------------- verify


def fh(data: bytes) -> rel.FileHash:
    return rel.hash_chunks([data[:3], data[3:]])


FILES = {"a/train.jsonl": b'{"id":"a-1"}\n', "README.md": "# 数据集\n".encode(), "manifest.json": b"{}\n"}


def good(listing_known: bool = True):
    """A release of one directory output `a` (publish) and two file outputs (merge)."""
    files = {rel_: fh(data) for rel_, data in FILES.items()}
    manifest = {"files": {r: {"sha256": h.sha256, "bytes": h.size} for r, h in files.items() if r != "manifest.json"}}
    listing = {"train.jsonl": files["a/train.jsonl"].md5}
    outs = [rel.LockOut("README.md", files["README.md"].md5, "merge"),
            rel.LockOut("a", rel.listing_md5(listing), "publish@a", listing if listing_known else None),
            rel.LockOut("manifest.json", files["manifest.json"].md5, "merge")]
    return files, manifest, outs


def test_hash_chunks_matches_hashlib():
    data = FILES["README.md"]
    assert fh(data) == rel.FileHash(hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data))


def test_a_release_that_matches_has_no_problems():
    files, manifest, outs = good()
    assert rel.check_release(files, manifest, outs) == []
    files, manifest, outs = good(listing_known=False)
    assert rel.check_release(files, manifest, outs) == []  # no listing: the directory hash still matches


def test_a_changed_file_is_named_against_both_records():
    files, manifest, outs = good()
    before = files["a/train.jsonl"]
    files["a/train.jsonl"] = fh(b'{"id":"a-2"}\n')
    problems = rel.check_release(files, manifest, outs)
    want_sha = manifest["files"]["a/train.jsonl"]["sha256"][:12]
    assert rel.render_problems(problems, "data/release") == [
        f"data/release/a/train.jsonl: sha256 {files['a/train.jsonl'].sha256[:12]} (13 bytes) does not match "
        f"manifest.json's {want_sha} (13 bytes)",
        f"data/release/a/train.jsonl: md5 {files['a/train.jsonl'].md5[:12]} does not match dvc.lock's "
        f"{before.md5[:12]}",
    ]
    assert rel.mismatched_files(problems) == ["a/train.jsonl"]
    assert rel.stages_of(rel.mismatched_files(problems), outs) == ["publish@a"]


def test_missing_and_extra_files():
    files, manifest, outs = good()
    del files["README.md"]
    files["extra.txt"] = fh(b"x")
    lines = rel.render_problems(rel.check_release(files, manifest, outs), "data/release")
    assert lines == ["data/release/README.md: missing (listed in manifest.json)",
                     "data/release/README.md: missing (listed in dvc.lock)",
                     "data/release/extra.txt: not listed in manifest.json",
                     "data/release/extra.txt: not in dvc.lock"]


def test_without_the_listing_the_directory_hash_decides():
    files, manifest, outs = good(listing_known=False)
    files["a/extra.jsonl"] = fh(b"{}\n")
    problems = [p for p in rel.check_release(files, manifest, outs) if "manifest.json" not in p.problem]
    assert len(problems) == 1 and problems[0].path == "a"
    assert problems[0].problem.startswith("directory hash ")
    assert f"does not match dvc.lock's {outs[1].md5}" in problems[0].problem
    files, manifest, outs = good()
    files["manifest.json"] = fh(b"{ }\n")  # the manifest itself is only covered by dvc.lock
    assert [p.path for p in rel.check_release(files, manifest, outs)] == ["manifest.json"]


def test_a_corrupted_listing_object_is_reported():
    files, manifest, outs = good()
    bad = {"train.jsonl": "0" * 32}
    outs[1] = rel.LockOut("a", outs[1].md5, "publish@a", bad)
    problems = rel.check_release(files, manifest, outs)
    assert problems[0] == rel.Mismatch("a", f"dvc.lock's listing object {outs[1].md5} is corrupted (its content "
                                            f"hashes to {rel.listing_md5(bad)})")


def test_an_unreadable_manifest():
    assert rel.parse_manifest(None) == (None, [rel.Mismatch("manifest.json", "missing")])
    manifest, notes = rel.parse_manifest(b"{not json")
    assert manifest is None and notes[0].problem.startswith("is not valid JSON (")
    files, _, outs = good()
    assert rel.check_release(files, {"version": "v0.1"}, outs) == [
        rel.Mismatch("manifest.json", "has no 'files' mapping")]


# --------------------------------------------------------------------------- the tag message


def manifest_of(version, cats):
    return {"name": "COIG-CQIA", "version": version, "released": sum(c["released"] for c in cats.values()),
            "categories": cats, "files": {f"f{i}": {"bytes": 33018} for i in range(10)}}


def cat(raw, released):
    return {"raw": raw, "released": released, "rejected": raw - released, "rejected_by_reason": {}}


LOCK_OUT = [rel.LockOut("manifest.json", "d9a2", "merge"), rel.LockOut("zhihu", "0123.dir", "publish@zhihu")]


def test_the_first_release_message():
    msg = rel.tag_message(manifest_of("v0.1", {"100poison": cat(41, 39), "zhihu": cat(31, 24)}), None, LOCK_OUT,
                          "data/release")
    assert msg == """\
COIG-CQIA v0.1: 63 records in 2 categories

category   raw  released  rejected
---------  ---  --------  --------
100poison   41        39         2
zhihu       31        24         7
---------  ---  --------  --------
total       72        63         9

First release: no earlier release tag.

data/release: 11 files, 330180 bytes besides manifest.json, which holds their sha256; manifest.json md5 d9a2 (dvc.lock, stage merge)
Check it with `cqia verify --rev v0.1`; fetch it with `dvc get <repo> data/release --rev v0.1`.
"""


def test_the_message_says_what_changed_since_the_previous_release():
    before = {"100poison": cat(41, 39), "zhihu": cat(31, 24), "old": cat(5, 5)}
    now = manifest_of("v0.2", {"100poison": cat(41, 39), "zhihu": cat(31, 16), "xhs": cat(3, 3)})
    msg = rel.tag_message(now, ("v0.1", before), LOCK_OUT, "data/release")
    assert msg.splitlines()[:11] == [
        "COIG-CQIA v0.2: 58 records in 3 categories",
        "",
        "category   raw  released  rejected      vs v0.1",
        "---------  ---  --------  --------  -----------",
        "100poison   41        39         2           +0",
        "zhihu       31        16        15           -8",
        "xhs          3         3         0          new",
        "old          -         -         -  removed (5)",
        "---------  ---  --------  --------  -----------",
        "total       75        58        17          -10",
        "",
    ]
    assert ("Changes since v0.1: zhihu released 24 -> 16 (raw 31 -> 31); xhs added (3 released); "
            "old removed (had 5 released).") in msg
    same = rel.tag_message(manifest_of("v0.3", before), ("v0.2", before), LOCK_OUT, "data/release")
    assert "Changes since v0.2: none in the counts." in same
    unknown = rel.tag_message(now, ("v0.1", None), LOCK_OUT, "data/release")
    assert "Changes since v0.1: unknown (no release metrics committed at v0.1)." in unknown
    assert "vs v0.1" not in unknown


def test_the_previous_counts_come_from_the_committed_metrics():
    assert rel.categories_of(b'{"version": "v0.1", "categories": {"zhihu": {"raw": 31, "released": 24}}}') == \
        {"zhihu": {"raw": 31, "released": 24}}
    for broken in (None, b"", b"{", b"[]", b'{"version": "v0.1"}', b'{"categories": {"zhihu": 3}}'):
        assert rel.categories_of(broken) is None, broken


# --------------------------------------------------------------------------- dvc repro's output


def test_gate_failure_is_one_line_with_the_stage_and_the_expectation():
    lines = [
        "Running stage 'category@100poison':",
        "> python -m stages.category --category 100poison ...",
        "error: category 100poison: Great Expectations suite 'default' failed on 39 rows:",
        "  - expect_column_value_lengths_to_be_between on column 'output': 36 failing, e.g. ids 100poison-1",
        "  Nothing was written. Fix the data or the rule that let it through, or the suite if it is wrong.",
        "ERROR: failed to reproduce 'category@100poison': failed to run: python -m stages.category, exited with 1",
    ]
    assert rel.gate_failure(lines) == (
        "stage category@100poison: category 100poison: Great Expectations suite 'default' failed on 39 rows: "
        "expect_column_value_lengths_to_be_between on column 'output': 36 failing, e.g. ids 100poison-1")
    assert rel.gate_failure(["ERROR: failed to reproduce 'merge': x"]) == "failed to reproduce 'merge': x"
    assert rel.gate_failure([]) == "dvc repro failed"


# --------------------------------------------------------------------------- the CLI's first checks


def test_release_refuses_a_malformed_version_before_anything_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not even a git repository: the version is checked first
    result = CliRunner().invoke(cli, ["release", "0.3"])
    assert result.exit_code == 1
    assert result.stderr == f"error: release 0.3: version '0.3' is malformed. {FORM}\n"


def test_verify_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["verify"])
    assert result.exit_code == 1
    assert result.stderr == (f"error: {tmp_path}: not inside a cqia registry (no dvc.yaml and .dvc/ here or above). "
                             "cd into the registry's clone\n")


# --------------------------------------------------------------------------- the remote, before anything is built

OTHER = "or choose another remote with --remote NAME (`dvc remote list`)"


def remote_repo(url: str):
    """What check_remote reads of a DVC repository: its config."""
    return SimpleNamespace(config={"remote": {"store": {"url": url}}, "core": {"remote": "store"}})


def test_a_directory_remote_is_refused_when_it_cannot_be_created(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CqiaError) as err:
        rel.check_remote(remote_repo(str(tmp_path / "afile/dvc-store")), "store", "release v0.3")
    assert str(err.value) == (f"release v0.3: DVC remote 'store' ({tmp_path}/afile/dvc-store) cannot be created: "
                              f"{tmp_path}/afile is not a directory. Move that file away, {OTHER}")
    rel.check_remote(remote_repo(str(tmp_path / "new/dir/dvc-store")), "store", "release v0.3")  # creatable
    assert not (tmp_path / "new").exists()  # and the check created nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_directory_remote_is_refused_when_it_is_not_writable(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(CqiaError) as err:
        rel.check_remote(remote_repo(str(tmp_path / "ro/dvc-store")), "store", "release v0.3")
    assert str(err.value) == (f"release v0.3: DVC remote 'store' ({tmp_path}/ro/dvc-store) cannot be written: "
                              f"you may not write in {tmp_path}/ro. Fix its permissions, {OTHER}")


def test_a_remote_that_does_not_answer_is_refused_after_the_timeout(monkeypatch):
    import dvc.fs

    class Silent:  # a remote filesystem whose calls never return
        protocol = "silent"

        def __init__(self, **config):
            pass

        def exists(self, path):
            time.sleep(30)

    monkeypatch.setattr(dvc.fs, "get_cloud_fs", lambda config, name: (Silent, {}, "bucket/path"))
    started = time.monotonic()
    with pytest.raises(CqiaError) as err:
        rel.check_remote(remote_repo("silent://bucket/path"), "store", "release v0.3", timeout=0.5)
    assert time.monotonic() - started < 5
    assert str(err.value) == ("release v0.3: DVC remote 'store' (silent://bucket/path) did not answer within 0.5 s. "
                              f"Check its endpoint and the network, {OTHER}")


@pytest.mark.process
def test_dvc_runs_without_the_unawaited_coroutine_warning():
    # what `dvc push` to S3 printed after its error when s3fs left calls pending
    code = "import asyncio\nasync def exists(): pass\nexists()\n"
    noisy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONWARNINGS": ""})
    assert "was never awaited" in noisy.stderr
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=rel.tool_env())
    assert quiet.stderr == ""
