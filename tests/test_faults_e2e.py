"""Faults under the real `dvc` and `git` (issue 18, items 4 and 5): a damaged object in the DVC cache or on
the remote, and two `dvc repro` at once. Each row of the Faults table in docs/troubleshooting.md that
is not a disk-full row (tests/test_disk_full*.py), a killed stage (tests/test_reliability_e2e.py) or S3
(tests/test_s3_faults_e2e.py, tests/test_release_e2e.py) is backed here: what the user sees, and that
what the table says to run next repairs it.

One release is built with the committed `.dvc/config` (`dvc repro`, pushed to its `store` remote, a
directory under $HOME, with `verify = true`); each test works on a copy of the repository and of $HOME.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, Repo, isolated_env, make_repo, mid_write, more_zhihu_records

pytestmark = pytest.mark.e2e

FILE = "data/release/zhihu/train.jsonl"


STORE = "home/.local/share/cqia-registry/dvc-store"   # the committed `store` remote, under $HOME


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """tmp/repo (built, committed, tagged v0.1, pushed) and tmp/home, whose `store` remote holds the data."""
    repo = make_repo(tmp_path_factory.mktemp("faults"))
    shutil.copy(ROOT / ".dvc/config", repo.file(".dvc/config"))   # the committed remotes, `verify = true`
    repo.dvc("repro")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "v0.1")
    repo.git("tag", "v0.1")
    repo.dvc("push", "-q")
    return repo.path.parent


@pytest.fixture
def copy(built: Path, tmp_path: Path) -> Repo:
    """A copy of the built repo and of its $HOME, so that the copy has its own `store` remote."""
    shutil.copytree(built / "repo", tmp_path / "repo", symlinks=True)
    shutil.copytree(built / "home", tmp_path / "home", symlinks=True)
    return Repo(tmp_path / "repo", isolated_env(tmp_path))


def lock_md5(repo: Repo, file: str = FILE) -> str:
    return damaged_md5(repo.file(file))


def damaged_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


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


def test_cqia_release_refuses_to_push_a_damaged_cache_object_and_the_repair_lets_it_finish(copy):
    """`dvc push` sends a damaged cache object as it is (the workspace copy being sound): cqia release
    hashes the release's objects before the push, names the damaged one, and pushes nothing."""
    md5 = lock_md5(copy)
    store = copy.path.parent / STORE
    pushed = obj(store, md5).read_bytes()
    for gone in (obj(store, md5), obj(store, release_dir_md5(copy))):   # as if it had never reached the remote
        gone.unlink()                                                    # (the file, and its directory's listing)
    damage(obj(copy.file(".dvc/cache"), md5))
    refused = copy.cqia("release", "v0.2", check=False)
    assert refused.returncode == 1
    rel = f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}"
    assert refused.stderr.splitlines()[-1] == (
        f"error: {rel}: the DVC cache object of {FILE} is damaged (it holds md5 {damaged_md5(copy.file(rel))[:12]}, "
        f"not the {md5[:12]} it is named by). Nothing was pushed, committed or tagged; remove it and rebuild: "
        f"`rm -f {rel}`, then `dvc repro --force publish@zhihu` (it writes the same bytes again), then run "
        "`cqia release v0.2` again")
    assert not obj(store, md5).exists() and copy.git("tag", "-l", "v0.2").stdout == ""
    # the repair the message gives, then the same command
    copy.run("sh", "-c", f"rm -f {rel}")
    copy.dvc("repro", "--force", "publish@zhihu")
    copy.cqia("release", "v0.2")
    assert copy.git("tag", "-l", "v0.2").stdout == "v0.2\n"
    assert obj(store, md5).read_bytes() == pushed


def clone(copy: Repo, name: str) -> Repo:
    dest = copy.path.parent / name
    subprocess.run(["git", "clone", "-q", str(copy.path), str(dest)], env=copy.env, check=True)
    return Repo(dest, copy.env)


def damaged_remote(copy: Repo) -> tuple[str, Path, Repo]:
    """Damage the `store` remote's object of FILE; (its md5, the remote, a clone with nothing pulled)."""
    md5 = lock_md5(copy)
    remote = copy.path.parent / STORE
    damage(obj(remote, md5))
    return md5, remote, clone(copy, "user")


def repair_as_told(copy: Repo, user: Repo, remove: str, md5: str) -> None:
    """The repair cqia verify's message gives: remove, rebuild, push; then a fresh clone pulls FILE whole."""
    user.run("sh", "-c", remove)
    user.dvc("repro", "--force", "publish@zhihu")
    user.dvc("push", "-q")
    assert user.cqia("verify").returncode == 0
    fresh = clone(copy, "fresh")
    fresh.dvc("pull", "-q")
    assert lock_md5(fresh) == md5 and fresh.cqia("verify").returncode == 0


def test_dvc_pull_refuses_a_damaged_remote_object_and_cqia_verify_names_it(copy):
    md5, remote, user = damaged_remote(copy)
    # the committed remote has `verify = true`: DVC hashes what it fetched, drops the damaged object, and
    # the pull fails naming the output; the object is named only in the debug log (-v)
    pull = user.dvc("pull", check=False)
    assert pull.returncode == 1
    assert pull.stderr.endswith("ERROR: failed to pull data from the cloud - Checkout failed for following targets:\n"
                                "data/release/zhihu\nIs your cache up to date?\n<https://error.dvc.org/missing-files>\n")
    assert md5 not in pull.stdout + pull.stderr
    cached = obj(user.file(".dvc/cache"), md5)
    assert not cached.exists() and not user.file(FILE).exists()
    verbose = user.dvc("pull", "-v", check=False)
    assert verbose.returncode == 1 and f"DEBUG: corrupted cache file '{cached}'." in verbose.stdout
    # cqia verify names the remote's object and the repair
    verify = user.cqia("verify", check=False)
    assert verify.returncode == 1
    remote_obj, listing = obj(remote, md5), obj(remote, release_dir_md5(user))
    assert verify.stderr == (
        f"error: {remote_obj}: the object on DVC remote 'store' of {FILE} is damaged (it holds md5 "
        f"{damaged_md5(remote_obj)[:12]}, not the {md5[:12]} it is named by). Remove it and rebuild: "
        f"`rm -f {remote_obj} {listing}`, then `dvc repro --force publish@zhihu` (it writes the same bytes again), "
        "then `dvc push`\n")
    repair_as_told(copy, user, f"rm -f {remote_obj} {listing}", md5)


def test_after_a_pull_from_another_remote_refuses_cqia_verify_remote_names_its_object(copy):
    md5 = lock_md5(copy)
    mirror = copy.path.parent / "mirror"
    shutil.copytree(copy.path.parent / STORE, mirror)
    damage(obj(mirror, md5))
    user = clone(copy, "user")
    user.dvc("remote", "add", "--local", "mirror", str(mirror))
    user.dvc("remote", "modify", "--local", "mirror", "verify", "true")     # as docs/releases.md says
    assert user.dvc("pull", "-r", "mirror", check=False).returncode == 1      # Checkout failed ... data/release/zhihu
    # the default remote holds the file whole: cqia verify says to pull it from there
    verify = user.cqia("verify", check=False)
    assert verify.stderr == (
        "error: data/release: 2 files do not match release v0.1 (zhihu/train.jsonl, zhihu/train.parquet). "
        "The DVC cache has no object for zhihu/train.jsonl, and DVC remote 'store' holds it whole: "
        "`dvc pull -r store publish@zhihu`\n")
    named = user.cqia("verify", "--remote", "mirror", check=False)
    assert named.stderr.startswith(f"error: {obj(mirror, md5)}: the object on DVC remote 'mirror' of {FILE} is "
                                   "damaged (it holds md5 ")
    assert user.cqia("verify", "--remote", "nowhere", check=False).stderr == (
        "error: --remote: DVC remote 'nowhere' is not configured. Available remotes: mirror, s3, store "
        "(`dvc remote list`)\n")
    user.dvc("pull", "-q", "-r", "store", "publish@zhihu")
    assert user.cqia("verify").returncode == 0


def test_a_remote_without_verify_gives_the_damaged_bytes_and_cqia_verify_names_both_copies(copy):
    md5, remote, user = damaged_remote(copy)
    user.dvc("remote", "modify", "--local", "store", "verify", "false")   # DVC's default for a remote
    assert user.dvc("pull").returncode == 0 and lock_md5(user) != md5     # taken without a word
    verify = user.cqia("verify", check=False)
    assert verify.returncode == 1
    cached = f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}"
    remote_obj, listing = obj(remote, md5), obj(remote, release_dir_md5(user))
    assert verify.stderr == (
        f"error: {cached}: the DVC cache object of {FILE} is damaged (it holds md5 {lock_md5(user)[:12]}, not the "
        f"{md5[:12]} it is named by), and so is its copy on DVC remote 'store' ({remote_obj}). Remove them and "
        f"rebuild: `rm -f {cached} {remote_obj} {listing}`, then `dvc repro --force publish@zhihu` (it writes the "
        "same bytes again), then `dvc push`\n")
    assert str(listing).endswith(".dir")
    repair_as_told(copy, user, f"rm -f {cached} {remote_obj} {listing}", md5)


def test_cqia_verify_rev_names_a_damaged_remote_object_without_a_checkout(copy):
    md5, remote, user = damaged_remote(copy)    # nothing pulled: verify --rev streams the release from the remote
    verify = user.cqia("verify", "--rev", "v0.1", check=False)
    assert verify.returncode == 1
    assert verify.stderr.startswith(f"error: {obj(remote, md5)}: the object on DVC remote 'store' of {FILE} is "
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
