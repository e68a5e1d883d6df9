"""The message `cqia verify` gives for a damaged DVC object (cqia/registry/cache_objects.py); the real
objects, DVC and the repair are in tests/test_faults_e2e.py."""

from __future__ import annotations

import pytest

from cqia.registry.cache_objects import Damaged, Objects, damage_error, expected_md5, uncached_fix
from cqia.registry.releases import LockOut

pytestmark = pytest.mark.unit

A, B = "6a61b19507dec2b8140c694f2208afd8", "5b05e9d338dd2f12054ca278fe25f158"


def test_expected_md5_reads_a_directory_output_listing_and_a_file_output():
    outs = [LockOut("zhihu", "e5cd.dir", "publish@zhihu", {"train.jsonl": A, "train.parquet": B}),
            LockOut("manifest.json", B, "merge")]
    assert expected_md5(outs, "zhihu/train.jsonl") == (A, outs[0])
    assert expected_md5(outs, "manifest.json") == (B, outs[1])
    assert expected_md5(outs, "zhihu/other") is None and expected_md5(outs, "x.json") is None


def test_a_damaged_object_on_a_cloud_remote_is_deleted_with_its_own_tool():
    damaged = [Damaged("data/release/zhihu/train.jsonl", "publish@zhihu", A, B, "s3",
                       f"s3://bucket/store/files/md5/6a/{A[2:]}", False, "s3://bucket/store/files/md5/e5/cd.dir"),
               Damaged("data/release/manifest.json", "merge", B, A, "cache", f".dvc/cache/files/md5/5b/{B[2:]}", True)]
    assert str(damage_error(damaged)) == (
        f"s3://bucket/store/files/md5/6a/{A[2:]}: the object on DVC remote 's3' of data/release/zhihu/train.jsonl "
        f"is damaged (it holds md5 5b05e9d338dd, not the 6a61b19507de it is named by); so are the objects of "
        f"1 more file (data/release/manifest.json). Remove them and rebuild: `rm -f .dvc/cache/files/md5/5b/{B[2:]}`, "
        f"then delete s3://bucket/store/files/md5/6a/{A[2:]} s3://bucket/store/files/md5/e5/cd.dir with the "
        "remote's own tool, then `dvc repro --force merge publish@zhihu` (it writes the same bytes again), "
        "then `dvc push`")


def test_a_file_whose_object_is_not_in_the_cache_is_pulled_from_the_remote_that_holds_it_whole():
    whole = Objects([], ["zhihu/train.jsonl"], "store", ["zhihu/train.jsonl"])
    assert uncached_fix(whole, "publish@zhihu") == (
        "the DVC cache has no object for zhihu/train.jsonl, and DVC remote 'store' holds it whole: "
        "`dvc pull -r store publish@zhihu`")
    nowhere = Objects([], ["zhihu/train.jsonl", "zhihu/train.parquet"], "store", ["zhihu/train.parquet"])
    assert uncached_fix(nowhere, "publish@zhihu") == (
        "neither the DVC cache nor DVC remote 'store' has an object for zhihu/train.jsonl, zhihu/train.parquet: "
        "pull them from a remote that has them (`dvc pull -r NAME publish@zhihu`; if that fails with `Checkout "
        "failed`, `cqia verify --remote NAME` names the damaged object there), or rebuild them with "
        "`dvc repro --force publish@zhihu`")
    assert uncached_fix(Objects([], ["a"], None, []), "merge").startswith("neither the DVC cache has an object for a:")
