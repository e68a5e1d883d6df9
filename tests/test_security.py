"""Security: no credentials in the repository, YAML loaded safely, params cannot name paths outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqia.common.errors import CqiaError
from cqia.common.params import check_name, check_relative_file, load_yaml
from cqia.ingest.config import checked_category

ROOT = Path(__file__).resolve().parent.parent

# --- no credentials in files git would commit ---------------------------------------

SECRETS = {
    "AWS access key id": re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    "AWS secret access key": re.compile(r"(?i)aws_?secret_?access_?key\W{1,4}[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,})"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
}
# DVC remote options that hold a credential: they belong in .dvc/config.local (git-ignored),
# set with `dvc remote modify --local`, never in the committed .dvc/config.
DVC_SECRET_KEYS = re.compile(r"(?im)^\s*(access_key_id|secret_access_key|session_token|password|account_key|"
                             r"sas_token|connection_string|gdrive_client_secret|gdrive_service_account_json_file_path"
                             r"|key_id|secret)\s*=\s*\S")
SECRET_FILES = re.compile(r"(^|/)(\.env(\..*)?|id_[rd]sa|id_ed25519|.*\.pem|.*\.p12|config\.local|credentials)$")


def committable_files() -> list[str]:
    """Files git tracks, plus new files it would add (not ignored)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return sorted({name for name in out.decode().split("\0") if name and (ROOT / name).is_file()})


def scan(name: str, text: str) -> list[str]:
    found = [f"{name}: {what}" for what, pattern in SECRETS.items() if pattern.search(text)]
    if name.endswith(".dvc/config") or name == ".dvc/config":
        found += [f"{name}: DVC remote option '{m.group(1)}'" for m in DVC_SECRET_KEYS.finditer(text)]
    if SECRET_FILES.search(name):
        found.append(f"{name}: a credentials file")
    return found


def test_the_scanner_finds_what_it_looks_for():
    # built at run time, so that this file itself holds no credential
    key = "AKIA" + "Q3EXAMPLE7WJ2KX4P"[:16]
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
    assert scan("a.py", f"aws_access_key_id = {key}") == ["a.py: AWS access key id"]
    assert scan("b.ini", f"aws_secret_access_key = {secret}") == ["b.ini: AWS secret access key"]
    assert scan("c", "-----BEGIN OPENSSH " + "PRIVATE KEY-----") == ["c: private key"]
    assert scan("d", "token: hf_" + "a1B2" * 9) == ["d: Hugging Face token"]
    assert scan(".dvc/config", "['remote \"s3\"']\n    url = s3://b/x\n    secret_access_key = abc\n") == [
        ".dvc/config: DVC remote option 'secret_access_key'"]
    assert scan("deploy/.env", "") == ["deploy/.env: a credentials file"]
    # what moto-based tests use is not a credential
    assert scan("tests/s3.py", 'AWS_SECRET_ACCESS_KEY="cqia-test-secret"; url = "s3://bucket/key"') == []


@pytest.mark.process
def test_no_credentials_in_committable_files():
    files = committable_files()
    assert ".dvc/config" in files and "params.yaml" in files
    found = []
    for name in files:
        path = ROOT / name
        if path.stat().st_size > 5_000_000:
            continue
        found += scan(name, path.read_bytes().decode("utf-8", "replace"))
    assert found == []


# --- YAML is loaded safely ------------------------------------------------------------

def test_yaml_tags_that_run_code_are_an_error_not_a_call(tmp_path):
    marker = tmp_path / "pwned"
    params = tmp_path / "params.yaml"
    params.write_text(f'release: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(CqiaError) as exc:
        load_yaml(params)
    assert str(exc.value).startswith(f"{params}:1: not valid YAML (")
    assert str(exc.value).endswith("). Fix the YAML syntax")
    assert not marker.exists()


@pytest.mark.process
def test_no_module_loads_yaml_unsafely():
    # ruamel's "safe" and round-trip loaders build only plain data; these build arbitrary objects
    unsafe = re.compile(r"typ\s*=\s*['\"]unsafe['\"]|unsafe_load|UnsafeLoader|FullLoader|yaml\.Loader\b")
    offenders = [name for name in committable_files() if name.endswith(".py") and name != "tests/test_security.py"
                 and unsafe.search((ROOT / name).read_text(encoding="utf-8", errors="replace"))]
    assert offenders == []


# --- names and paths from params stay inside the repository ---------------------------

ESCAPES = ["..", "../x", "a/b", "/etc", "./x", "x/..", "a\\b", ".hidden", "", " x", "x\n", "ｘ", "x" * 65,
           "CON", "x:y", "~root", "x\x00y"]


@pytest.mark.parametrize("name", ESCAPES)
def test_names_that_could_be_paths_are_refused(name):
    with pytest.raises(CqiaError, match="is not allowed"):
        check_name(name, "params.yaml")


@given(st.text(max_size=70))
def test_every_accepted_name_is_one_directory_inside_its_parent(name):
    parent = ROOT / "data" / "raw"
    try:
        check_name(name, "params.yaml")
    except CqiaError:
        return
    assert (parent / name).resolve().parent == parent.resolve()
    assert name == name.strip() and "/" not in name and "." not in name


@given(st.text(max_size=40))
def test_every_accepted_raw_file_is_a_file_inside_the_raw_directory(value):
    raw_dir = ROOT / "data" / "raw" / "x"
    try:
        check_relative_file(value, "params.yaml")
    except CqiaError:
        return
    assert (raw_dir / value).resolve().parent == raw_dir.resolve()


@pytest.mark.parametrize("entry, message", [
    ({"raw": ["../../../etc/passwd"]}, "categories.t.raw: raw file '../../../etc/passwd' must be a plain file name"),
    ({"raw": ["/etc/passwd"]}, "categories.t.raw: raw file '/etc/passwd' must be a plain file name"),
    ({"raw": ["sub/train.jsonl"]}, "categories.t.raw: raw file 'sub/train.jsonl' must be a plain file name"),
    ({"suite": "../../tmp/x"}, "categories.t.suite: category name '../../tmp/x' is not allowed"),
])
def test_params_entries_cannot_point_outside(entry, message):
    base = {"format": "poison-mpts", "raw": ["train.jsonl"]}
    with pytest.raises(CqiaError) as exc:
        checked_category("t", {**base, **entry})
    assert str(exc.value).startswith(f"params.yaml: {message}")
