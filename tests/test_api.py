"""`cqia.load` reads a tagged release through DVC, the way a consumer would: the workspace
has no release and the DVC cache is empty, so the records come from the DVC remote at the tag."""

from __future__ import annotations

import json
import shutil

import orjson
import pytest

import cqia
from conftest import make_repo, release_records_bytes, remove_outputs
from cqia.common.errors import CqiaError
from cqia.registry.export import to_sharegpt

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """A registry with release v0.1 tagged and pushed to a local directory remote, then a later commit;
    its workspace release and DVC cache are gone."""
    tmp = tmp_path_factory.mktemp("api")
    repo = make_repo(tmp)
    remote = tmp / "remote"
    repo.dvc("remote", "add", "-d", "local", str(remote))  # committed with the tag, as a consumer needs it
    repo.dvc("repro")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "release v0.1")
    repo.git("tag", "v0.1")
    repo.dvc("push")
    release = repo.file("data/release")
    expected = {"full": release_records_bytes(release),
                "zhihu": release.joinpath("zhihu", "train.jsonl").read_bytes()}
    repo.file("NOTES.md").write_text("after the release\n")
    repo.git("add", "NOTES.md")
    repo.git("commit", "-q", "-m", "later work")
    remove_outputs(release)
    shutil.rmtree(repo.file(".dvc/cache"))
    with pytest.MonkeyPatch.context() as mp:  # in-process dvc: the repo's isolated environment
        for key in ("DVC_NO_ANALYTICS", "DVC_SITE_CACHE_DIR", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR",
                    "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL"):
            mp.setenv(key, repo.env[key])
        yield repo, remote, expected


def lines(data: bytes) -> list[dict]:
    return [orjson.loads(line) for line in data.split(b"\n") if line]


def test_load_reads_a_tagged_release_with_no_checkout(tagged):
    repo, _, expected = tagged
    head = repo.git("rev-parse", "HEAD").stdout
    records = list(cqia.load(rev="v0.1", repo=str(repo.path)))
    assert records == lines(expected["full"])
    assert len(records) == 87
    assert list(cqia.load(rev="v0.1", category="zhihu", repo=str(repo.path))) == lines(expected["zhihu"])
    # nothing was checked out: same commit, clean tree, still no release in the workspace
    assert repo.git("rev-parse", "HEAD").stdout == head
    assert repo.git("status", "--porcelain").stdout == ""
    assert [p.name for p in repo.file("data/release").rglob("*") if p.is_file()] == [".gitignore"] * 2


def test_load_from_inside_the_registry_needs_no_repo_argument(tagged, monkeypatch):
    repo, _, expected = tagged
    monkeypatch.chdir(repo.path)
    first = next(iter(cqia.load(rev="v0.1", category="zhihu")))
    assert first == lines(expected["zhihu"])[0]


def test_load_checks_revision_and_category_at_the_call(tagged):
    repo, _, _ = tagged
    with pytest.raises(CqiaError) as err:
        cqia.load(rev="v0.1", category="weibo", repo=str(repo.path))
    assert str(err.value) == (f"{repo.path} v0.1:data/release: release v0.1 has no category 'weibo'. "
                              "Available categories: ['100poison', 'human_value', 'zhihu']")
    with pytest.raises(CqiaError) as err:
        cqia.load(rev="v9.9", repo=str(repo.path))
    assert str(err.value) == (f"{repo.path} v9.9:data/release/manifest.json: unknown revision 'v9.9'. "
                              "Release tags: v0.1; or pass a branch or commit")
    with pytest.raises(CqiaError) as err:
        cqia.load(rev="v0.l", repo=str(repo.path))
    assert str(err.value).endswith("unknown revision 'v0.l'. Did you mean 'v0.1'? Release tags: v0.1; "
                                   "or pass a branch or commit")
    first = repo.git("rev-list", "--max-parents=0", "HEAD").stdout.strip()
    with pytest.raises(CqiaError) as err:
        cqia.load(rev=first, repo=str(repo.path))
    assert str(err.value) == (f"{repo.path} {first}:data/release/manifest.json: no release at this revision. "
                              "Pass a revision that has one (`git tag` lists the releases)")
    with pytest.raises(CqiaError) as err:
        cqia.load(rev="v0.1", repo=str(repo.path / "nope"))
    assert str(err.value) == (f"{repo.path / 'nope'} v0.1:data/release/manifest.json: not a git repository, "
                              "or it cannot be cloned. Pass the path or git URL of a cqia-registry repository")


def test_a_release_missing_from_the_remote_is_named(tagged):
    repo, remote, _ = tagged
    moved = remote.with_name("remote.moved")
    shutil.rmtree(repo.file(".dvc/cache"), ignore_errors=True)
    remote.rename(moved)
    try:
        with pytest.raises(CqiaError) as err:
            cqia.load(rev="v0.1", repo=str(repo.path))
    finally:
        moved.rename(remote)
        shutil.rmtree(repo.file(".dvc/cache"), ignore_errors=True)
    assert str(err.value) == (f"{repo.path} v0.1:data/release/manifest.json: the release is in neither the local "
                              "DVC cache nor the DVC remote configured at this revision. Run `dvc push` where the "
                              "release was built, with a default remote committed before the tag "
                              "(`dvc remote add -d NAME URL`)")


def test_export_at_a_tag(tagged, tmp_path):
    repo, _, expected = tagged
    proc = repo.cqia("export", "--format", "sharegpt", "--rev", "v0.1", "--category", "zhihu",
                     "--out", str(tmp_path), "--json")
    result = json.loads(proc.stdout)
    assert {k: result[k] for k in ("release", "rev", "category", "records", "dataset")} == {
        "release": "v0.1", "rev": "v0.1", "category": "zhihu", "records": 24, "dataset": "coig_cqia_v0.1_zhihu_sharegpt"}
    exported = json.loads((tmp_path / "coig_cqia_v0.1_zhihu_sharegpt.json").read_text(encoding="utf-8"))
    assert exported == [to_sharegpt(r) for r in lines(expected["zhihu"])]
    assert [p.name for p in repo.file("data/release").rglob("*") if p.is_file()] == [".gitignore"] * 2
