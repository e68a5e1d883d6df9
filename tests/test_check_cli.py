"""`cqia check`: params checked in full without building, from any directory of the registry."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from cqia.cli import cli
from tests.conftest import ROOT


@pytest.fixture
def registry(tmp_path, monkeypatch):
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("expectations", "data/raw", "data/reviews"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check(*args):
    return CliRunner().invoke(cli, ["check", *args])


def test_the_sample_params_pass(registry):
    result = check()
    assert result.exit_code == 0, result.output
    assert result.output == ("params.yaml: 3 categories checked (100poison, human_value, zhihu): formats, rules, "
                             "normalisation, raw files, reviews and suites\n")


def test_a_misspelt_rule_knob_is_named_with_the_ones_that_exist(registry):
    params = registry / "params.yaml"
    params.write_text(params.read_text(encoding="utf-8").replace("max_chars:", "max_charz:", 1), encoding="utf-8")
    result = check()
    assert result.exit_code == 1
    assert result.output.startswith("error: params.yaml: rule_defaults: unknown key(s) ['max_charz']. Available keys: [")


def test_a_missing_raw_file_is_named(registry, monkeypatch):
    (registry / "data/raw/zhihu/train.jsonl").unlink()
    monkeypatch.chdir(registry / "data")
    result = check("--json")
    assert result.exit_code == 1
    assert result.output.startswith('{"error":"raw file \'train.jsonl\' listed in params is missing"')
