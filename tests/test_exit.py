"""How `cqia` and the stages end: Python's shutdown work done, native teardown skipped (cqia.common.entry.exit_now)."""

import atexit
import sys
import threading

import pytest

from cqia.common import entry
from cqia.common.errors import CqiaError

pytestmark = pytest.mark.unit


@pytest.fixture
def exits(monkeypatch):
    """The codes passed to os._exit, and what had happened by then."""
    seen = []
    monkeypatch.setattr("os._exit", lambda code: seen.append(code))
    return seen


def test_exit_now_joins_threads_runs_atexit_then_exits(exits, capsys):
    order = []
    worker = threading.Thread(target=lambda: order.append("thread done"))
    worker.start()
    atexit.register(order.append, "atexit ran")
    try:
        entry.exit_now(3)
    finally:
        atexit.unregister(order.append)
    assert order == ["thread done", "atexit ran"]
    assert exits == [3]


def test_run_ends_a_stage_error_in_one_line_and_exit_1(exits, capsys):
    def main():
        raise CqiaError("bad line", where="data/raw/x.jsonl:3", fix="Fix it")

    entry.run(main)
    assert exits == [1]
    assert capsys.readouterr().err == "error: data/raw/x.jsonl:3: bad line. Fix it\n"


def test_cli_main_passes_click_exit_codes(exits, monkeypatch, capsys):
    from cqia import cli

    monkeypatch.setattr(sys, "argv", ["cqia", "--version"])
    cli.main()
    monkeypatch.setattr(sys, "argv", ["cqia", "no-such-command"])
    cli.main()
    assert exits == [0, 2]
    assert "No such command" in capsys.readouterr().err
