"""The S3 remote failing while data moves: `dvc push` and `dvc pull` through a real TCP proxy.

Between dvc-s3 and moto's server sits tests/tcp_proxy.py. It counts the bytes it forwards
and cuts every connection (a reset, mid-stream) once a set number has gone up (push) or down
(pull), then refuses connections until restored: the network going away in the middle of a
transfer, with no sleep as the synchronisation. Each test checks what the user sees (exit
code, the last line), that the retry completes, that `dvc status -c` is clean, and that a
fresh clone pulls byte-identical files, so no cut-off object was taken for a whole one.
The stall tests check that an endpoint that accepts and never answers, or stops sending in the middle
of a download, is given up within the bound that `read_timeout` of the `s3` remote sets (a stall in the
middle of an upload is not: `cqia release` stops that push, tests/test_release_e2e.py).

The repository here holds one DVC-tracked directory of generated records (6 files, 6 MB),
big enough that the cut lands while files are in flight, and the committed `.dvc/config`.
AWS_MAX_ATTEMPTS=2 (botocore's default is 5) keeps a failing command short: refused
connections are retried with backoff, about 14 s in all with the default; the outcome is the
same.
"""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path

import orjson
import pytest
from s3_server import S3Server
from tcp_proxy import TcpProxy
from test_pipeline_e2e import tree_digest

from conftest import ROOT, Repo, isolated_env

pytestmark = pytest.mark.e2e

FILES, RECORDS_PER_FILE = 6, 2_000
ATTEMPTS = 2                    # AWS_MAX_ATTEMPTS in these tests
READ_TIMEOUT = 10               # read_timeout of the `s3` remote in the committed .dvc/config


def records(seed: int) -> bytes:
    """About 1 MB of JSON Lines records, the same bytes for the same seed."""
    rnd = random.Random(seed)
    return b"".join(orjson.dumps({"id": f"gen-{seed}-{i}", "instruction": f"第{i}个问题", "input": "",
                                  "output": rnd.randbytes(240).hex()}) + b"\n" for i in range(RECORDS_PER_FILE))


class Setup:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.s3 = S3Server("cqia-registry").start()  # the bucket of the committed `s3://cqia-registry/dvc-store`
        self.s3.create_bucket()
        self.proxy = TcpProxy(self.s3.port).start()
        env = {**isolated_env(tmp), **self.s3.env(tmp), "AWS_ENDPOINT_URL": self.proxy.endpoint,
               "AWS_MAX_ATTEMPTS": str(ATTEMPTS)}
        self.repo = Repo(tmp / "repo", env)
        self.repo.path.mkdir()
        self.repo.git("init", "-q", "-b", "main")
        self.repo.dvc("init", "-q")
        shutil.copy(ROOT / ".dvc/config", self.repo.file(".dvc/config"))
        data = self.repo.file("data/generated")
        data.mkdir(parents=True)
        for n in range(FILES):
            (data / f"part-{n}.jsonl").write_bytes(records(n))
        self.digest = tree_digest(data)
        self.size = sum(p.stat().st_size for p in data.iterdir())
        self.repo.dvc("add", "-q", "data/generated")
        self.repo.git("add", "-A")
        self.repo.git("commit", "-q", "-m", "generated records")

    def clone(self, name: str) -> Repo:
        clone = Repo(self.tmp / name, self.repo.env)
        clone.run("git", "clone", "-q", str(self.repo.path), str(clone.path), cwd=self.tmp)
        return clone

    def close(self) -> None:
        self.proxy.stop()
        self.s3.stop()


@pytest.fixture
def setup(tmp_path):
    s = Setup(tmp_path)
    yield s
    s.close()


def in_sync(repo: Repo) -> str:
    return repo.dvc("status", "-c", "-r", "s3").stdout.strip()


def error_lines(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("ERROR: ")]


def test_push_cut_mid_transfer_fails_then_the_retry_completes(setup):
    repo, proxy = setup.repo, setup.proxy
    proxy.cut_after(setup.size * 2 // 5, "up")
    cut = repo.dvc("push", "-r", "s3", check=False)
    assert proxy.was_cut.is_set() and proxy.forwarded["up"] < setup.size  # cut while files were in flight
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert re.fullmatch(r"ERROR: failed to push data to the cloud - \d+ files? failed to upload",
                        error_lines(cut)[-1]), cut.stderr

    proxy.restore()
    assert repo.dvc("status", "-c", "-q", "-r", "s3", check=False).returncode == 1  # not all there
    again = repo.dvc("push", "-r", "s3")
    assert re.fullmatch(r"\d+ files? pushed", again.stdout.strip().splitlines()[-1]), again.stdout
    assert in_sync(repo) == "Cache and remote 's3' are in sync."
    clone = setup.clone("clone")
    clone.dvc("pull", "-q", "-r", "s3")
    assert tree_digest(clone.file("data/generated")) == setup.digest  # no cut-off object taken for whole


def test_pull_cut_mid_transfer_fails_then_the_retry_completes(setup):
    repo, proxy = setup.repo, setup.proxy
    repo.dvc("push", "-q", "-r", "s3")
    clone = setup.clone("clone")
    proxy.cut_after(setup.size * 2 // 5, "down")
    cut = clone.dvc("pull", "-r", "s3", check=False)
    assert proxy.was_cut.is_set() and proxy.forwarded["down"] < setup.size
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert re.fullmatch(r"ERROR: failed to pull data from the cloud - \d+ files? failed to download",
                        error_lines(cut)[-1]), cut.stderr
    assert clone.dvc("status", "-q", check=False).returncode == 1  # the workspace says it is incomplete

    proxy.restore()
    clone.dvc("pull", "-q", "-r", "s3")
    assert tree_digest(clone.file("data/generated")) == setup.digest
    assert clone.dvc("status", "-q", check=False).returncode == 0
    assert in_sync(clone) == "Cache and remote 's3' are in sync."


def test_a_stalled_endpoint_is_given_up_within_the_read_timeout(setup):
    repo, proxy = setup.repo, setup.proxy
    config = repo.file(".dvc/config").read_text()
    assert f"read_timeout = {READ_TIMEOUT}\n" in config and "connect_timeout = 5\n" in config
    proxy.stall()  # connections are accepted and never answered
    start = time.monotonic()
    stalled = repo.dvc("push", "-r", "s3", check=False)
    took = time.monotonic() - start
    assert stalled.returncode != 0
    assert error_lines(stalled)[-1] == (f'ERROR: unexpected error - Read timeout on endpoint URL: '
                                        f'"{proxy.endpoint}/cqia-registry"'), stalled.stderr
    # each attempt waits read_timeout; between attempts a backoff of a second or two
    assert ATTEMPTS * READ_TIMEOUT <= took <= ATTEMPTS * READ_TIMEOUT + 10, took
    assert proxy.connections >= ATTEMPTS

    proxy.restore()
    repo.dvc("push", "-q", "-r", "s3")
    assert in_sync(repo) == "Cache and remote 's3' are in sync."


S3FS_RETRIES = 5                # s3fs's `retries`: how many times it opens an object again after a failed read


def test_pull_stalled_mid_transfer_is_given_up_within_the_read_timeouts(setup):
    """The endpoint stops sending in the middle of the downloads (and answers nothing after). A read waits
    read_timeout; s3fs then opens the object again from where it was, up to 5 times, each open being
    AWS_MAX_ATTEMPTS requests that wait read_timeout: read_timeout x (1 + 5 x AWS_MAX_ATTEMPTS) plus
    backoff in all. 116 s measured with the committed 10 s and AWS_MAX_ATTEMPTS=2 (295 s with the default
    5); this test sets read_timeout 3 in the clone's config.local to take 40 s, not two minutes."""
    repo, proxy = setup.repo, setup.proxy
    repo.dvc("push", "-q", "-r", "s3")
    clone = setup.clone("clone")
    read_timeout = 3
    clone.dvc("remote", "modify", "--local", "s3", "read_timeout", str(read_timeout))
    proxy.cut_after(setup.size * 2 // 5, "down", then="stall")  # then nothing more moves, on any connection
    start = time.monotonic()
    stalled = clone.dvc("pull", "-r", "s3", check=False)
    took = time.monotonic() - start
    assert proxy.was_cut.is_set() and proxy.forwarded["down"] < setup.size
    assert stalled.returncode == 1, stalled.stdout + stalled.stderr
    errors = error_lines(stalled)
    assert re.fullmatch(r"ERROR: failed to pull data from the cloud - \d+ files? failed to download", errors[-1])
    assert re.fullmatch(rf"ERROR: failed to transfer '[0-9a-f]{{32}}' - Read timeout on endpoint URL: "
                        rf'"{proxy.endpoint}/cqia-registry/dvc-store/files/md5/[0-9a-f]{{2}}/[0-9a-f]{{30}}"',
                        errors[0]), errors
    bound = read_timeout * (1 + S3FS_RETRIES * ATTEMPTS)
    assert bound <= took <= bound + 15, took
    assert clone.dvc("status", "-q", check=False).returncode == 1   # the workspace says it is incomplete

    proxy.restore()
    clone.dvc("pull", "-q", "-r", "s3")
    assert tree_digest(clone.file("data/generated")) == setup.digest
    assert clone.dvc("status", "-q", check=False).returncode == 0
