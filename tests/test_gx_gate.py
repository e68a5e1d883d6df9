"""The Great Expectations gate, in the stage's process and in another (the server's child, or a helper).

tests/test_gx_server.py tests the server itself."""

from __future__ import annotations

import pandas as pd
import pytest

from cqia.common.errors import CqiaError
from cqia.gates.gx import GateProcess, failure_report
from cqia.gates.gx_worker import SuiteRun

pytestmark = pytest.mark.process  # helper processes running the suite

SUITE = {"name": "t", "expectations": [
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "output_chars", "min_value": 1}},
]}
COLUMNS = ("id", "output_chars")
CHUNKS = [[("a-1", 5), ("a-2", 0)], [("a-3", 7), ("a-3", 0)]]


def test_the_helper_process_gives_the_result_of_one_process():
    here = SuiteRun(SUITE)
    helper = GateProcess(SUITE)
    for rows in CHUNKS:
        here.validate(pd.DataFrame.from_records(rows, columns=list(COLUMNS)))
        helper.validate_rows(COLUMNS, rows)
    result = helper.result()
    assert result == here.result()
    assert result["rows"] == 4 and not result["success"]
    between = result["expectations"][1]
    assert between["unexpected_count"] == 2 and between["sample_ids"] == ["a-2", "a-3"]
    assert "expect_column_values_to_be_between on column 'output_chars': 2 failing" in failure_report(result, "x")


def test_an_expectation_gx_cannot_build_is_the_stage_error():
    helper = GateProcess({"name": "bad", "expectations": [{"type": "expect_no_such_thing", "kwargs": {}}]})
    with pytest.raises(CqiaError) as err:
        helper.validate_rows(COLUMNS, CHUNKS[0])
        helper.result()
    assert err.value.where == "suite bad"
    assert str(err.value).startswith("suite bad: expectation 'expect_no_such_thing' cannot be built (")
    assert str(err.value).endswith("Check the expectation's name and kwargs against the GX Core 1.x gallery")


def test_a_helper_that_dies_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("CQIA_GX_SERVER", "0")  # with the server: tests/test_gx_server.py
    helper = GateProcess(SUITE)
    helper._process.kill()
    helper._process.wait()
    with pytest.raises(CqiaError) as err:
        helper.validate_rows(COLUMNS, CHUNKS[0])
        helper.result()
    assert str(err.value).startswith("the Great Expectations gate process")
