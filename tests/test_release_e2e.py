"""Releases end to end: `cqia release` / `cqia verify` and what consumers do with a tag.

One registry is built per module (v0.1; then a rule change and a new category,
v0.2) and the tests share it; the ones that change it put it back. Consumers
work from a bare clone reached by a file:// URL, so nothing leaks from the
producer's workspace, cache or config.local. The registry uses the committed
`.dvc/config` as is: its default remote lives under $HOME, which is a temp dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from ruamel.yaml import YAML
from s3_server import S3Server, without_aws
from tcp_proxy import TcpProxy
from test_pipeline_e2e import edit_params, tree_digest

from conftest import BIN, ROOT, Repo, make_repo

pytestmark = pytest.mark.e2e

RELEASE = "data/release"


def add_category_xhs(repo: Repo) -> None:
    repo.file("data/raw/xhs").mkdir()
    records = [{"instruction": f"第{i}个问题：周末去哪里玩比较好？", "input": "",
                "output": f"推荐第{i}个去处：城郊的湿地公园，适合散步和拍照。",
                "task_type": {"major": ["问答"], "minor": ["生活"]}, "domain": ["生活"], "metadata": "",
                "answer_from": "human", "human_verified": False, "copyright": "作者授权"} for i in range(3)]
    repo.file("data/raw/xhs/train.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    repo.file("data/reviews/xhs.jsonl").write_bytes(b"")

    def change(p):
        p["categories"]["zhihu"]["rules"]["min_chars"] = {"output": 170}  # a rule change, over rule_defaults
        p["categories"]["xhs"] = {"format": "cqia-jsonl", "raw": ["train.jsonl"], "suite": "default",
                                  "source": "Xiaohongshu"}
    edit_params(repo, change)


def tag_message(repo: Repo, tag: str) -> str:
    return repo.git("tag", "--list", "--format=%(contents)", tag).stdout


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


class Registry:
    def __init__(self, repo: Repo, tmp: Path):
        self.repo = repo
        self.tmp = tmp
        self.bare = tmp / "registry.git"
        self.url = self.bare.as_uri()
        self.out: dict[str, str] = {}
        self.digest: dict[str, dict[str, str]] = {}
        self.manifest: dict[str, dict] = {}

    def release(self, version: str, *args: str, repo: Repo | None = None) -> None:
        repo = repo or self.repo
        self.out[version] = repo.cqia("release", version, *args).stdout
        self.digest[version] = tree_digest(repo.file(RELEASE))
        self.manifest[version] = json.loads(repo.file(f"{RELEASE}/manifest.json").read_text())

    def publish(self) -> None:
        """`git push --follow-tags` to the bare clone consumers use."""
        self.repo.git("push", "-q", "--follow-tags", str(self.bare), "main")

    def clone(self, name: str, env: dict[str, str] | None = None) -> Repo:
        path = self.tmp / name
        consumer = Repo(path, env or self.repo.env)
        consumer.run("git", "clone", "-q", self.url, str(path), cwd=self.tmp)
        return consumer


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    tmp = tmp_path_factory.mktemp("registry")
    repo = make_repo(tmp)
    repo.env = without_aws(repo.env)
    repo.env["HOME"] = str(tmp / "home")  # the committed default remote is under ~
    shutil.copy(ROOT / ".dvc/config", repo.file(".dvc/config"))
    repo.git("commit", "-q", "-m", "remotes", ".dvc/config")
    reg = Registry(repo, tmp)
    reg.release("v0.1")
    add_category_xhs(repo)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "zhihu: longer answers only; add xhs")
    reg.release("v0.2")
    repo.run("git", "init", "-q", "--bare", "-b", "main", str(reg.bare), cwd=tmp)
    reg.publish()
    return reg


def test_release_commits_the_build_and_tags_it_with_a_summary(registry):
    repo, m1, m2 = registry.repo, registry.manifest["v0.1"], registry.manifest["v0.2"]
    assert (m1["version"], m2["version"]) == ("v0.1", "v0.2")
    assert repo.git("cat-file", "-t", "v0.2").stdout.strip() == "tag"  # annotated
    assert repo.git("status", "--porcelain").stdout == ""
    assert repo.dvc("status", "-q", check=False).returncode == 0
    assert repo.dvc("status", "-c", "-q", check=False).returncode == 0  # all pushed to the default remote
    # the release commit holds what `dvc repro` wrote, and params.yaml's version line changed alone
    files = set(repo.git("show", "--name-only", "--format=", "v0.2^{commit}").stdout.split())
    assert {"data/release_metrics.json", "data/stages/xhs/.gitignore", "data/stages/xhs/metrics.json",
            "data/stages/zhihu/metrics.json", "dvc.lock", "params.yaml"} <= files
    sources = ("data/raw/", "data/reviews/", "stages/", "cqia/", "expectations/", "schemas/", "dvc.yaml")
    assert not [f for f in files if f.startswith(sources)]  # only what the build wrote (other stages' metrics too)
    diff = repo.git("diff", "-U0", "v0.2~1", "v0.2", "--", "params.yaml").stdout.splitlines()
    assert [l for l in diff if l[:1] in "+-" and l[:3] not in ("+++", "---")] == \
        ["-  version: v0.1", "+  version: v0.2"]
    # the tag message: counts per category and the change since v0.1, computed here from the manifests
    msg = tag_message(repo, "v0.2")
    c1, c2 = m1["categories"], m2["categories"]
    assert msg.startswith(f"COIG-CQIA v0.2: {m2['released']} records in 4 categories\n")
    zhihu_row = next(l for l in msg.splitlines() if l.startswith("zhihu "))
    delta = c2["zhihu"]["released"] - c1["zhihu"]["released"]
    assert zhihu_row.split() == ["zhihu", str(c2["zhihu"]["raw"]), str(c2["zhihu"]["released"]),
                                 str(c2["zhihu"]["rejected"]), f"{delta:+d}"]
    assert next(l for l in msg.splitlines() if l.startswith("xhs ")).split()[-1] == "new"
    assert (f"Changes since v0.1: zhihu released {c1['zhihu']['released']} -> {c2['zhihu']['released']} "
            f"(raw {c1['zhihu']['raw']} -> {c2['zhihu']['raw']}); xhs added ({c2['xhs']['released']} released).") in msg
    assert c2["zhihu"]["released"] < c1["zhihu"]["released"]  # the rule change did something
    assert "First release: no earlier release tag." in tag_message(repo, "v0.1")
    # what to push
    assert "Publish the commit and the tag:\n    git push --follow-tags\n" in registry.out["v0.2"]
    assert registry.out["v0.2"].startswith(msg)


def test_release_refusals_change_nothing(registry):
    repo = registry.repo
    tags = repo.git("tag", "--list").stdout
    head = repo.git("rev-parse", "HEAD").stdout
    params = repo.file("params.yaml").read_bytes()

    def refused(*args: str) -> str:
        proc = repo.cqia("release", *args, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        return proc.stderr.strip()

    form = "Use v<major>.<minor>[.<patch>], e.g. v0.2 or v1.0.1"
    assert refused("0.3") == f"error: release 0.3: version '0.3' is malformed. {form}"
    assert refused("v0.3-rc1") == f"error: release v0.3-rc1: version 'v0.3-rc1' is malformed. {form}"
    assert refused("v0.1") == ("error: release v0.1: tag v0.1 already exists. "
                               "Choose a new version (`git tag --list 'v*'` lists the releases)")
    assert refused("v0.2.0") == ("error: release v0.2.0: tag v0.2 already exists and names the same version as "
                                 "v0.2.0. Choose a new version (`git tag --list 'v*'` lists the releases)")
    assert refused("v0.3", "--remote", "nowhere") == (
        "error: release v0.3: DVC remote 'nowhere' is not configured. Available remotes: s3, store "
        "(`dvc remote list`)")
    with open(repo.file("data/reviews/zhihu.jsonl"), "ab") as handle:
        handle.write(b"\n")
    repo.file("notes.txt").write_text("scratch\n")
    repo.file("params.yaml").write_bytes(params.replace(b"chunk_rows: 200000", b"chunk_rows: 40000"))
    assert refused("v0.3") == ("error: release v0.3: the working tree has uncommitted changes: "
                               "data/reviews/zhihu.jsonl, notes.txt, params.yaml. "
                               "Commit or discard them; a release is built from committed files only")
    repo.git("checkout", "-q", "--", "data/reviews/zhihu.jsonl", "params.yaml")
    repo.file("notes.txt").unlink()
    repo.git("checkout", "-q", "--detach")
    try:  # a tag on no branch, which `git push --follow-tags` would not push
        assert refused("v0.3") == (
            f"error: release v0.3: HEAD is detached at {head[:7]}, so the release commit and its tag would be on no "
            "branch. Switch to the branch to release from (`git switch <branch>`), or make one at this commit "
            "(`git switch -c <branch>`)")
    finally:
        repo.git("checkout", "-q", "main")
    assert repo.git("tag", "--list").stdout == tags
    assert repo.git("rev-parse", "HEAD").stdout == head
    assert repo.file("params.yaml").read_bytes() == params
    assert repo.git("status", "--porcelain").stdout == ""


def test_verify_names_a_corrupted_file(registry):
    repo = registry.repo
    ok = repo.cqia("verify")
    n = len(registry.digest["v0.2"])
    outs = 2 * 4 + 2  # each of 4 categories' publish stage writes two directories; merge the manifest and card
    assert ok.stdout == (f"data/release: release v0.2, {n} files match manifest.json (sha256) and "
                         f"dvc.lock (md5 of {outs} outputs)\n")
    target = repo.file(f"{RELEASE}/zhihu/train.jsonl")
    good = target.read_bytes()
    target.write_bytes(good.replace("来得及".encode(), "来不及".encode(), 1))  # same size, other bytes
    assert target.read_bytes() != good and len(target.read_bytes()) == len(good)
    try:
        bad = repo.cqia("verify", check=False)
        assert bad.returncode == 1
        lines = bad.stdout.strip().splitlines()
        assert len(lines) == 2
        assert lines[0].startswith("data/release/zhihu/train.jsonl: sha256 ")
        assert lines[0].endswith(f"does not match manifest.json's "
                                 f"{registry.manifest['v0.2']['files']['zhihu/train.jsonl']['sha256'][:12]} "
                                 f"({len(good)} bytes)")
        assert lines[1].startswith("data/release/zhihu/train.jsonl: md5 ")
        assert lines[1].endswith(f"does not match dvc.lock's {hashlib.md5(good).hexdigest()[:12]}")
        assert bad.stderr == ("error: data/release: 1 file does not match release v0.2 (zhihu/train.jsonl). "
                              "Restore the release with `dvc checkout --force publish@zhihu`\n")
        report = json.loads(repo.cqia("verify", "--json", check=False).stdout)
        assert (report["ok"], report["version"], report["mismatched_files"]) == \
            (False, "v0.2", ["data/release/zhihu/train.jsonl"])
        assert [p["problem"].split()[0] for p in report["problems"]] == ["sha256", "md5"]
        # a tagged release is read from the cache, not the workspace
        assert repo.cqia("verify", "--rev", "v0.1").stdout.startswith(
            f"data/release at v0.1: release v0.1, {len(registry.digest['v0.1'])} files match")
    finally:
        repo.dvc("checkout", "-q", "--force", "publish@zhihu")
    assert repo.cqia("verify").stdout == ok.stdout


def test_a_fresh_clone_pulls_v01_and_rebuilds_it_byte_for_byte(registry):
    clone = registry.clone("clone")
    clone.git("checkout", "-q", "v0.1")
    clone.dvc("pull", "-q")
    assert tree_digest(clone.file(RELEASE)) == registry.digest["v0.1"]
    assert "release v0.1" in clone.cqia("verify").stdout
    repro = clone.dvc("repro", "--force")
    ran = sorted(l.split("'")[1] for l in repro.stdout.splitlines() if l.startswith("Running stage"))
    stages = sorted(YAML(typ="safe").load(clone.file("dvc.lock").read_text())["stages"])
    assert ran == stages and {"category@zhihu", "merge"} <= set(ran)  # every stage ran, none came from a cache
    assert tree_digest(clone.file(RELEASE)) == registry.digest["v0.1"]
    assert clone.dvc("status", "-q", check=False).returncode == 0
    assert clone.git("status", "--porcelain").stdout == ""  # dvc.lock and the metrics rebuilt identically


def test_get_import_and_the_python_api_from_an_unrelated_directory(registry):
    env, url = registry.repo.env, registry.url
    outside = registry.tmp / "consumer"
    outside.mkdir()
    consumer = Repo(outside, env)
    consumer.dvc("get", url, RELEASE, "--rev", "v0.1", "-o", "get-v0.1")
    assert tree_digest(outside / "get-v0.1") == registry.digest["v0.1"]
    consumer.git("init", "-q")
    consumer.dvc("init", "-q")
    consumer.dvc("import", url, RELEASE, "--rev", "v0.1", "-o", "release-v0.1")
    assert tree_digest(outside / "release-v0.1") == registry.digest["v0.1"]
    dvcfile = YAML(typ="safe").load((outside / "release-v0.1.dvc").read_text())
    assert dvcfile["deps"][0]["repo"]["rev"] == "v0.1"
    assert dvcfile["deps"][0]["repo"]["rev_lock"] == registry.repo.git("rev-list", "-n1", "v0.1").stdout.strip()
    code = (
        "import dvc.api, hashlib, json, sys\n"
        "url = sys.argv[1]\n"
        "for rev in ('v0.1', 'v0.2'):\n"
        "    manifest = json.loads(dvc.api.read('data/release/manifest.json', repo=url, rev=rev))\n"
        "    with dvc.api.open('data/release/zhihu/train.jsonl', repo=url, rev=rev, mode='rb') as f:\n"
        "        print(rev, manifest['version'], hashlib.sha256(f.read()).hexdigest())\n"
    )
    out = consumer.run(str(BIN / "python"), "-c", code, url).stdout
    assert out.splitlines() == [f"{v} {v} {registry.manifest[v]['files']['zhihu/train.jsonl']['sha256']}"
                                for v in ("v0.1", "v0.2")]


def test_a_failing_gate_refuses_the_release(registry):
    repo = registry.repo
    suite = json.loads(repo.file("expectations/default.json").read_text())
    suite["expectations"].append({"type": "expect_column_values_to_be_between",
                                  "kwargs": {"column": "output_chars", "max_value": 50}})
    repo.file("expectations/default.json").write_text(json.dumps(suite, ensure_ascii=False))
    repo.git("commit", "-q", "-am", "a suite no category passes")
    try:
        proc = repo.cqia("release", "v0.3", check=False)
        assert proc.returncode == 1
        line = last_line(proc.stderr)
        assert line.startswith("error: release v0.3: `dvc repro` failed: stage category@")
        assert "Great Expectations suite 'default' failed on " in line
        assert "expect_column_values_to_be_between on column 'output_chars': " in line
        assert line.endswith("Nothing was pushed, committed or tagged; fix what it says (and commit any change to "
                             "code, params or data), then run `cqia release v0.3` again")
        assert proc.stdout == ""
        assert "v0.3" not in repo.git("tag", "--list").stdout.split()
    finally:
        repo.git("reset", "-q", "--hard", "HEAD~1")
        repo.dvc("checkout", "-q", "--force")
    assert repo.dvc("status", "-q", check=False).returncode == 0


def test_s3_round_trip_and_an_endpoint_down_during_push(registry):
    tmp, repo = registry.tmp, registry.repo
    s3 = S3Server("cqia-registry").start()  # the bucket of the committed remote `s3://cqia-registry/dvc-store`
    try:
        producer = Repo(repo.path, {**repo.env, **s3.env(tmp)})
        assert "s3://cqia-registry/dvc-store" in repo.file(".dvc/config").read_text()
        params = repo.file("params.yaml").read_bytes()
        other = "or choose another remote with --remote NAME (`dvc remote list`)"

        def refused(who: Repo) -> str:
            """One line on stderr (no warning after it), nothing built, nothing changed."""
            proc = who.cqia("release", "v0.3", "--remote", "s3", check=False)
            assert (proc.returncode, proc.stdout) == (1, "")
            assert len(proc.stderr.splitlines()) == 1, proc.stderr
            assert repo.file("params.yaml").read_bytes() == params
            assert repo.git("status", "--porcelain").stdout == ""
            return proc.stderr.strip()

        keyless = Repo(repo.path, {k: v for k, v in producer.env.items() if "ACCESS_KEY" not in k})
        assert not repo.file(".dvc/config.local").exists()  # no keys there either
        assert refused(keyless) == (
            "error: release v0.3: DVC remote 's3' (s3://cqia-registry/dvc-store) has no credentials (Unable to "
            "locate credentials). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or `dvc remote modify --local s3 "
            f"access_key_id ...` and `... secret_access_key ...`, {other}")
        assert refused(producer) == (
            "error: release v0.3: DVC remote 's3' (s3://cqia-registry/dvc-store): bucket 'cqia-registry' does not "
            "exist, or these credentials cannot see it. Create it, or set the remote's url (`dvc remote modify s3 "
            f"url s3://BUCKET/PATH`), {other}")
        s3.create_bucket()
        s3.stop()
        assert refused(producer) == (
            "error: release v0.3: DVC remote 's3' (s3://cqia-registry/dvc-store) cannot be reached (Could not "
            f'connect to the endpoint URL: "{s3.endpoint}/cqia-registry"). Check its endpoint, '
            f"credentials and the network, {other}")
        assert "v0.3" not in repo.git("tag", "--list").stdout.split()

        s3.start()  # back, on the same port, with what it stored before
        assert producer.dvc("status", "-c", "-r", "s3", "-q", check=False).returncode == 1  # not there yet
        registry.release("v0.3", "--remote", "s3", repo=producer)
        assert producer.dvc("status", "-c", "-r", "s3", "-q", check=False).returncode == 0
        assert repo.git("status", "--porcelain").stdout == ""
        registry.publish()
        config = repo.git("show", "v0.3:.dvc/config").stdout
        assert "endpoint" not in config and "cqia-test" not in config

        # a consumer with S3 credentials and no access to the producer's directory remote
        env = {**without_aws(repo.env), **s3.env(tmp), "HOME": str(tmp / "home-consumer")}
        clone = registry.clone("clone-s3", env)
        clone.git("checkout", "-q", "v0.3")
        assert clone.dvc("pull", "-q", check=False).returncode != 0  # the default remote is not reachable here
        clone.dvc("pull", "-q", "-r", "s3")
        assert tree_digest(clone.file(RELEASE)) == registry.digest["v0.3"]
        assert "release v0.3" in clone.cqia("verify").stdout
        clone.dvc("get", registry.url, RELEASE, "--rev", "v0.3", "--remote", "s3", "-o", str(tmp / "get-s3"))
        assert tree_digest(tmp / "get-s3") == registry.digest["v0.3"]
        code = ("import dvc.api, json, sys\n"
                "print(json.loads(dvc.api.read('data/release/manifest.json', repo=sys.argv[1], rev='v0.3', "
                "remote='s3'))['version'])\n")
        assert clone.run(str(BIN / "python"), "-c", code, registry.url, cwd=tmp).stdout == "v0.3\n"
    finally:
        s3.stop()


def test_a_category_removed_by_hand_is_cleaned_up_by_category_remove(registry):
    repo = registry.repo
    head = repo.git("rev-parse", "HEAD").stdout.strip()
    try:
        edit_params(repo, lambda p: p["categories"].pop("xhs"))
        repo.git("commit", "-q", "-am", "drop xhs by hand")
        refused = repo.cqia("release", "v0.4", check=False)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == (
            "error: release v0.4: dvc.lock still has stages of category xhs, no longer in params.yaml "
            "(category@xhs, publish@xhs). Run `cqia category remove xhs`, commit, and run `cqia release v0.4` again\n")
        repo.dvc("repro", "-q")
        bad = repo.cqia("verify", check=False)
        assert bad.returncode == 1
        assert bad.stderr == (  # never `dvc checkout --force publish@xhs`: dvc.yaml has no such stage now
            "error: data/release: 4 files do not match release v0.3 (lineage/xhs/index.parquet, "
            "lineage/xhs/lineage.jsonl, xhs/train.jsonl and 1 more). Run `cqia category remove xhs` (category xhs "
            "is gone from params.yaml; it deletes what the category left)\n")

        out = repo.cqia("category", "remove", "xhs").stdout
        assert out.splitlines()[1:4] == ["  removed      data/raw/xhs/ (git rm)",
                                         "  removed      data/reviews/xhs.jsonl (git rm)",
                                         "  removed      data/stages/xhs/ (6 files, git rm)"]
        assert "categories.xhs" not in out  # the entry was gone already
        repro = repo.dvc("repro")
        assert sorted(l.split("'")[1] for l in repro.stdout.splitlines() if l.startswith("Running stage")) == \
            ["dedup", "merge", "report"]
        assert repo.cqia("verify").stdout.startswith("data/release: release v0.3, ")
        assert repo.dvc("status", "-q", check=False).returncode == 0
        assert sorted(p.relative_to(repo.path).as_posix() for p in repo.path.glob("data/**/*xhs*")) == []
        assert "xhs" not in repo.file("dvc.lock").read_text()
        repo.git("commit", "-q", "-am", "Remove category xhs")
        assert repo.git("status", "--porcelain").stdout == ""
        result = json.loads(repo.cqia("release", "v0.4", "--json").stdout)  # stdout is the JSON object alone
        manifest = json.loads(repo.file(f"{RELEASE}/manifest.json").read_text())
        assert result["commit"] == repo.git("rev-list", "-n1", "v0.4").stdout.strip()
        assert result["tag_message"] == tag_message(repo, "v0.4")[:-1]  # %(contents) adds a newline
        assert {k: result[k] for k in ("version", "tag", "branch", "previous", "released", "categories")} == {
            "version": "v0.4", "tag": "v0.4", "branch": "main", "previous": "v0.3",
            "released": manifest["released"], "categories": manifest["categories"]}
        assert (result["raw"], result["rejected"]) == (sum(c["raw"] for c in manifest["categories"].values()),
                                                       sum(c["rejected"] for c in manifest["categories"].values()))
        assert result["remote"]["name"] == "store" and "dvc.lock" in result["committed_files"]
        assert result["push"] == ["git push --follow-tags", "dvc push -r s3"]
        had = registry.manifest["v0.3"]["categories"]["xhs"]["released"]
        assert next(l for l in result["tag_message"].splitlines() if l.startswith("xhs ")).split() == \
            ["xhs", "-", "-", "-", "removed", f"({had})"]
        assert f"xhs removed (had {had} released)." in result["tag_message"]
    finally:
        repo.git("tag", "-d", "v0.4", check=False)
        repo.git("reset", "-q", "--hard", head)
        repo.dvc("checkout", "-q", "--force")
    assert repo.cqia("verify").returncode == 0


def test_a_release_stopped_at_each_step_is_finished_by_running_it_again(registry):
    """`cqia release` builds, pushes, commits and tags. Each stop here is a real one, no hook in cqia:
    during the push the S3 remote is cut mid-transfer (tests/tcp_proxy.py); after the build the process
    group is killed when cqia says it starts pushing; after the commit `git tag` fails on the lock file
    git leaves when it dies (`.git/refs/tags/VERSION.lock`); after the tag the command is run again.
    One version goes through all four stops, so only the first run rebuilds. Each rerun goes on, and a tag is only ever on a commit whose data is on the remote."""
    tmp, repo = registry.tmp, registry.repo
    head0 = repo.git("rev-parse", "HEAD").stdout.strip()
    s3 = S3Server("cqia-faults").start()
    s3.create_bucket()
    proxy = TcpProxy(s3.port).start()
    # a fresh S3 remote, so that the push has every output to send; AWS_MAX_ATTEMPTS=2: a refused
    # connection is retried once, not four times with backoff (~14 s)
    producer = Repo(repo.path, {**repo.env, **s3.env(tmp), "AWS_ENDPOINT_URL": proxy.endpoint,
                                "AWS_MAX_ATTEMPTS": "2"})
    producer.dvc("remote", "add", "--local", "faults", "s3://cqia-faults/store")

    def tags() -> list[str]:
        return sorted(set(repo.git("tag", "--list").stdout.split()) - {"v0.1", "v0.2", "v0.3"})

    def synced(remote: str, tag: str) -> bool:
        """The tag is HEAD, the tree is clean, and the workspace's data (the tag's) is all on `remote`."""
        assert repo.git("rev-parse", tag + "^{commit}").stdout == repo.git("rev-parse", "HEAD").stdout
        assert repo.git("status", "--porcelain").stdout == ""
        return producer.dvc("status", "-c", "-q", "-r", remote, check=False).returncode == 0

    try:
        # during the push: the remote is cut after 100 kB have gone up
        proxy.cut_after(100_000, "up")
        cut = producer.cqia("release", "v0.4", "--remote", "faults", check=False)
        assert proxy.was_cut.is_set() and cut.returncode == 1
        # what dvc says depends on the request the cut lands in
        assert re.fullmatch(r"error: release v0\.4: `dvc push -r faults` failed: (failed to push data to the cloud - "
                            r"\d+ files? failed to upload|unexpected error - Could not connect to the endpoint URL: "
                            r"\S+)\. Nothing was committed or tagged; when the remote is reachable, run `cqia release "
                            r"v0\.4 --remote faults` again", last_line(cut.stderr)), cut.stderr
        assert tags() == []
        proxy.restore()

        # after the build: the rerun is killed as it starts pushing
        cqia = subprocess.Popen([str(BIN / "cqia"), "release", "v0.4", "--remote", "faults"], cwd=repo.path,
                                env=producer.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        for line in cqia.stderr:
            if line == "release v0.4: built and verified; pushing the data to DVC remote 'faults'\n":
                os.killpg(cqia.pid, signal.SIGKILL)
                break
        assert cqia.wait(30) == -signal.SIGKILL
        cqia.stderr.close()
        assert tags() == []
        assert "dvc.lock" in repo.git("status", "--porcelain").stdout  # the build is in the workspace

        # after the commit: the next rerun pushes and commits, and `git tag` cannot take its lock
        lock = repo.file(".git/refs/tags/v0.4.lock")
        lock.write_text("")
        failed = producer.cqia("release", "v0.4", "--remote", "faults", check=False)
        head = repo.git("rev-parse", "--short", "HEAD").stdout.strip()
        assert failed.returncode == 1 and last_line(failed.stderr) == (
            f"error: release v0.4: `git tag` failed: fatal: cannot lock ref 'refs/tags/v0.4': Unable to create "
            f"'{lock}': File exists. The release commit {head} and its data on DVC remote 'faults' are in place, "
            "not the tag. Fix that and run `cqia release v0.4 --remote faults` again")
        assert repo.git("log", "-1", "--format=%s").stdout == "Release v0.4\n" and tags() == []
        assert synced("faults", "HEAD")
        lock.unlink()
        done = producer.cqia("release", "v0.4", "--remote", "faults")
        assert (f"Tagged v0.4 on commit {head} (the release commit of an earlier run); data pushed to DVC remote "
                "'faults' (") in done.stdout
        assert tags() == ["v0.4"] and synced("faults", "v0.4")

        # after the tag: the same command again; with another remote it puts the tag's data there too
        again = producer.cqia("release", "v0.4")
        assert again.stdout.startswith(tag_message(repo, "v0.4"))  # the tag's message, as the first run printed it
        assert f"v0.4 was tagged on commit {head} already; data pushed to DVC remote 'store' (" in again.stdout
        assert tags() == ["v0.4"] and synced("store", "v0.4")
    finally:
        proxy.stop()
        s3.stop()
        repo.git("tag", "-d", "v0.4", check=False)
        repo.file(".git/refs/tags/v0.4.lock").unlink(missing_ok=True)
        repo.dvc("remote", "remove", "--local", "faults", check=False)
        repo.git("reset", "-q", "--hard", head0)
        repo.dvc("checkout", "-q", "--force")


def test_a_push_that_stands_still_mid_upload_is_stopped_and_the_rerun_completes(registry):
    """The S3 endpoint stops reading in the middle of the upload of the one object the push has to send
    (tests/tcp_proxy.py: cut_after(..., then="stall")): `dvc push` would wait for ever, the watchdog stops it
    CQIA_PUSH_STALL_SECONDS after nothing moved. The rerun goes through a throttled link, slower than the
    watchdog's limit end to end, and completes: a push that moves is never stopped."""
    tmp, repo = registry.tmp, registry.repo
    head0 = repo.git("rev-parse", "HEAD").stdout.strip()
    s3 = S3Server("cqia-stall").start()
    s3.create_bucket()
    proxy = TcpProxy(s3.port).start()
    stall = 3
    producer = Repo(repo.path, {**repo.env, **s3.env(tmp), "AWS_ENDPOINT_URL": proxy.endpoint, "AWS_MAX_ATTEMPTS": "2",
                                "CQIA_PUSH_STALL_SECONDS": str(stall)})
    producer.dvc("remote", "add", "--local", "stall", "s3://cqia-stall/store")
    blob_size = 40 << 20      # far more than the socket buffers hold, so the upload stops mid-way
    try:
        # the build of v0.5 on the remote already, so that the release's push has one object to send: a blob
        edit_params(repo, lambda p: p["release"].update(version="v0.5"))
        producer.dvc("repro", "-q")
        producer.dvc("push", "-q", "-r", "stall")
        repo.file("data/blob.bin").write_bytes(os.urandom(blob_size))
        producer.dvc("add", "-q", "data/blob.bin")
        repo.git("add", "data/blob.bin.dvc", "data/.gitignore")
        repo.git("commit", "-q", "-m", "a blob")

        proxy.cut_after(2 << 20, "up", then="stall")
        cqia = subprocess.Popen([str(BIN / "cqia"), "release", "v0.5", "--remote", "stall"], cwd=repo.path,
                                env=producer.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started, lines = None, []
        for line in cqia.stderr:
            lines.append(line)
            if line.startswith("release v0.5: built and verified; pushing"):
                started = time.monotonic()
            last = line
        assert cqia.wait(120) == 1 and started is not None, "".join(lines)
        took = time.monotonic() - started
        assert proxy.was_cut.is_set() and proxy.forwarded["up"] < blob_size
        assert last == ("error: release v0.5: `dvc push -r stall` made no progress for 3 s (nothing read, written or "
                        "sent), so it was stopped. Nothing was committed or tagged; when the remote is reachable, run "
                        "`cqia release v0.5 --remote stall` again (CQIA_PUSH_STALL_SECONDS sets how long a push may "
                        "stand still)\n")
        # stopped `stall` seconds after the stall, give or take a sample, SIGTERM's wait and the start of dvc
        assert stall <= took <= stall + 10, took
        assert "v0.5" not in repo.git("tag", "--list").stdout.split()

        proxy.restore()
        proxy.throttle(blob_size / (3 * stall))   # the blob takes three times the watchdog's limit to go up
        start = time.monotonic()
        done = producer.cqia("release", "v0.5", "--remote", "stall")
        assert time.monotonic() - start > 3 * stall
        assert "Tagged v0.5 on commit " in done.stdout
        assert repo.git("rev-parse", "v0.5^{commit}").stdout == repo.git("rev-parse", "HEAD").stdout
        assert producer.dvc("status", "-c", "-r", "stall").stdout.strip() == "Cache and remote 'stall' are in sync."
    finally:
        proxy.stop()
        s3.stop()
        repo.git("tag", "-d", "v0.5", check=False)
        repo.dvc("remote", "remove", "--local", "stall", check=False)
        repo.git("reset", "-q", "--hard", head0)
        repo.file("data/blob.bin").unlink(missing_ok=True)
        repo.dvc("checkout", "-q", "--force")
