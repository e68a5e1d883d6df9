"""Faults under the real `dvc` and `git` (issue 18, items 4 and 5): a damaged object in the DVC cache or on
the remote, and two `dvc repro` at once. Each row of the Faults table in docs/troubleshooting.md that
is not a disk-full row (tests/test_disk_full*.py) or a killed stage (tests/test_reliability_e2e.py) is
backed here: what the user sees, and that what the table says to run next repairs it.

One release is built (`dvc repro`, pushed to a local-directory remote); each test works on a copy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, Repo, isolated_env, make_repo, mid_write, more_zhihu_records

pytestmark = pytest.mark.e2e

FILE = "data/release/zhihu/train.jsonl"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """tmp/repo (built, committed, tagged v0.1, pushed) and tmp/remote, a local-directory DVC remote."""
    repo = make_repo(tmp_path_factory.mktemp("faults"))
    repo.dvc("repro")
    repo.dvc("remote", "add", "-d", "-f", "local", "../remote")   # tmp/remote, kept relative
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "v0.1")
    repo.git("tag", "v0.1")
    repo.dvc("push", "-q")
    return repo.path.parent


@pytest.fixture
def copy(built: Path, tmp_path: Path) -> Repo:
    """A copy of the built repo and its remote (the remote's URL is relative, so the copy has its own)."""
    shutil.copytree(built / "repo", tmp_path / "repo", symlinks=True)
    shutil.copytree(built / "remote", tmp_path / "remote")
    return Repo(tmp_path / "repo", isolated_env(tmp_path))


def lock_md5(repo: Repo, file: str = FILE) -> str:
    return subprocess.run(["md5sum", str(repo.file(file))], capture_output=True, text=True).stdout[:32]


def obj(store: Path, md5: str) -> Path:
    return store / "files" / "md5" / md5[:2] / md5[2:]


def damage(path: Path) -> None:
    """Change one byte of a (read-only) object, as a disk error would: same size, and the same mtime."""
    stat = path.stat()
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x20
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    path.chmod(0o444)


def release_dir_md5(repo: Repo, stage: str = "publish@zhihu", out: str = "data/release/zhihu") -> str:
    lock = yaml.safe_load(repo.file("dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == out)


def test_a_damaged_cache_object_is_named_by_cqia_verify_and_the_repair_in_its_message_works(copy):
    md5 = lock_md5(copy)
    cached = obj(copy.file(".dvc/cache"), md5)
    damage(cached)
    # DVC trusts its cache: status and repro see nothing, checkout copies the damaged bytes back
    assert copy.dvc("status").stdout == "Data and pipelines are up to date.\n"
    assert "Data and pipelines are up to date." in copy.dvc("repro").stdout
    copy.file(FILE).unlink()
    copy.dvc("checkout", "-q")
    assert lock_md5(copy) != md5
    verify = copy.cqia("verify", check=False)
    assert verify.returncode == 1
    rel = f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}"
    assert verify.stderr == (
        f"error: {rel}: the DVC cache object of {FILE} is damaged (it holds md5 {lock_md5(copy)[:12]}, not the "
        f"{md5[:12]} it is named by). Remove it and rebuild: `rm -f {rel}`, then `dvc repro --force publish@zhihu` "
        "(it writes the same bytes again)\n")
    # the repair the message gives
    copy.run("sh", "-c", f"rm -f {rel}")
    copy.dvc("repro", "--force", "publish@zhihu")
    assert copy.cqia("verify").stdout.startswith("data/release: release v0.1, 14 files match")
    assert lock_md5(copy) == md5 and copy.git("status", "--porcelain").stdout == ""


def clone(copy: Repo, name: str) -> Repo:
    dest = copy.path.parent / name
    subprocess.run(["git", "clone", "-q", str(copy.path), str(dest)], env=copy.env, check=True)
    return Repo(dest, copy.env)


def test_a_damaged_object_on_the_remote_is_named_after_a_pull_and_the_repair_in_its_message_works(copy):
    md5 = lock_md5(copy)
    remote = copy.path.parent / "remote"
    damage(obj(remote, md5))
    # with the remote's `verify = true`, dvc pull refuses, naming the output (not the object)
    careful = clone(copy, "careful")
    careful.dvc("remote", "modify", "--local", "local", "verify", "true")
    pull = careful.dvc("pull", check=False)
    assert pull.returncode == 1
    assert "ERROR: failed to pull data from the cloud - Checkout failed for following targets:\ndata/release/zhihu\n" \
        in pull.stderr
    # by default, dvc pull takes it without a word; cqia verify names both copies and the repair
    user = clone(copy, "user")
    assert user.dvc("pull").returncode == 0 and lock_md5(user) != md5
    verify = user.cqia("verify", check=False)
    assert verify.returncode == 1
    cached = f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}"
    remote_obj, listing = obj(remote, md5), obj(remote, release_dir_md5(user))
    assert verify.stderr == (
        f"error: {cached}: the DVC cache object of {FILE} is damaged (it holds md5 {lock_md5(user)[:12]}, not the "
        f"{md5[:12]} it is named by), and so is its copy on DVC remote 'local' ({remote_obj}). Remove them and "
        f"rebuild: `rm -f {cached} {remote_obj} {listing}`, then `dvc repro --force publish@zhihu` (it writes the "
        "same bytes again), then `dvc push`\n")
    assert str(listing).endswith(".dir")
    user.run("sh", "-c", f"rm -f {cached} {remote_obj} {listing}")
    user.dvc("repro", "--force", "publish@zhihu")
    user.dvc("push", "-q")
    assert user.cqia("verify").returncode == 0
    fresh = clone(copy, "fresh")
    fresh.dvc("pull", "-q")
    assert lock_md5(fresh) == md5 and fresh.cqia("verify").returncode == 0


def test_cqia_verify_rev_names_a_damaged_remote_object_without_a_checkout(copy):
    md5 = lock_md5(copy)
    remote = copy.path.parent / "remote"
    damage(obj(remote, md5))
    user = clone(copy, "user")        # nothing pulled: verify --rev streams the release from the remote
    verify = user.cqia("verify", "--rev", "v0.1", check=False)
    assert verify.returncode == 1
    assert verify.stderr.startswith(f"error: {obj(remote, md5)}: the object on DVC remote 'local' of {FILE} is "
                                    f"damaged (it holds md5 ")


def test_a_second_dvc_repro_while_one_runs_is_refused_and_the_first_is_not_harmed(copy):
    more_zhihu_records(copy, 6_000)              # long enough to be caught running
    first = subprocess.Popen([str(BIN / "dvc"), "repro", "--force", "category@zhihu"], cwd=copy.path, env=copy.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        mid_write(copy.file("data/stages/zhihu"), first)
        second = copy.dvc("repro", check=False)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode != 0
    # DVC's per-output lock (.dvc/tmp/rwlock) names the output, the running command and its pid
    assert (f"ERROR: failed to reproduce 'category@zhihu': '{copy.path}/data/stages/zhihu/metrics.json' is busy, "
            f"it is being blocked by:\n  (PID {first.pid}): {BIN}/dvc repro --force category@zhihu\n") in second.stderr
    assert f"If there are no processes with such PIDs, you can manually remove '{copy.path}/.dvc/tmp/rwlock'" \
        in second.stderr
    copy.dvc("repro")        # the killed one renamed nothing into place; DVC drops its stale lock, and this completes
    assert copy.dvc("status").stdout == "Data and pipelines are up to date.\n"
    assert copy.cqia("verify").returncode == 0
