"""The Great Expectations gate: a hand-written suite run on a stage's batch.

Suites are plain JSON files in expectations/ (no generated ids, so diffs stay
clean):

    {"name": "default",
     "expectations": [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}}]}

They run in an ephemeral GX Core 1.x context on a pandas frame of the batch,
chunk by chunk (`gates.chunk_rows` in params.yaml) so memory stays bounded.
Importing great_expectations costs seconds (about 2 s here, measured in
BENCHMARKS.md), so the stages run the suite in another process (`GateProcess`):
a child of the Great Expectations server (cqia/gates/gx_server.py), which imported GX
once for every stage, or with `CQIA_GX_SERVER=0` a helper process of the stage's
own, which imports GX on the second core while the stage reads and checks its
records. Either validates each chunk as the stage sends it; the stage waits only
for the last chunk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cqia.common.errors import CqiaError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

SAMPLE_IDS = 5


@dataclass
class ExpectationResult:
    type: str
    column: str | None
    success: bool
    unexpected_count: int = 0
    sample_ids: list[str] = field(default_factory=list)
    observed: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)   # the expectation's arguments besides the column

    def as_dict(self) -> dict[str, Any]:
        out = {"expectation": self.type, "column": self.column, "success": self.success,
               "unexpected_count": self.unexpected_count}
        if self.kwargs:
            out["kwargs"] = self.kwargs
        if self.sample_ids:
            out["sample_ids"] = self.sample_ids
        if self.observed is not None:
            out["observed"] = self.observed
        return out


def load_suite(path: str | Path) -> dict[str, Any]:
    try:
        suite = orjson.loads(Path(path).read_bytes())
    except OSError:
        raise CqiaError("expectation suite not found", where=str(path),
                        fix="Create it, or point the category's 'suite' at an existing file in expectations/") from None
    except orjson.JSONDecodeError as exc:
        raise CqiaError(f"expectation suite is not valid JSON ({exc})", where=str(path)) from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise CqiaError("a suite is {\"name\": ..., \"expectations\": [...]}", where=str(path))
    for number, exp in enumerate(suite["expectations"], start=1):
        if not isinstance(exp, dict) or not isinstance(exp.get("type"), str) or not isinstance(exp.get("kwargs", {}), dict):
            raise CqiaError(f"expectation {number} needs a 'type' string and a 'kwargs' object", where=str(path))
    return suite


def _build_suite(gx, name: str, expectations: list[dict[str, Any]]):
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    built = []
    for exp in expectations:
        try:
            built.append(ExpectationConfiguration(type=exp["type"], kwargs=dict(exp.get("kwargs", {}))).to_domain_obj())
        except Exception as exc:  # GX raises its own errors for unknown types and bad kwargs
            raise CqiaError(f"expectation {exp['type']!r} cannot be built ({exc})", where=f"suite {name}",
                            fix="Check the expectation's name and kwargs against the GX Core 1.x gallery") from None
    return gx.ExpectationSuite(name=name, expectations=built)


class SuiteRun:
    """One suite, validated chunk by chunk as a stage produces its batch.

    The GX context and suite are built once; `validate(frame)` runs the
    suite on one chunk (a pandas DataFrame) and adds its failures to the
    totals, so a stage never holds more than one chunk in memory.
    """

    def __init__(self, suite: dict[str, Any], extra: list[dict[str, Any]] | None = None):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.name = suite.get("name", "")
        expectations = list(suite["expectations"]) + list(extra or [])
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._suite = context.suites.add(_build_suite(gx, suite.get("name", "suite"), expectations))
        self._batches = (context.data_sources.add_pandas("cqia")
                         .add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole"))
        self._results = [ExpectationResult(e["type"], e.get("kwargs", {}).get("column"), True,
                                           kwargs={k: v for k, v in e.get("kwargs", {}).items() if k != "column"})
                         for e in expectations]
        self._by_id = {exp.id: res for exp, res in zip(self._suite.expectations, self._results)}
        self.rows = 0

    def validate(self, frame) -> None:
        self.rows += len(frame)
        batch = self._batches.get_batch(batch_parameters={"dataframe": frame})
        validation = batch.validate(self._suite, result_format={"result_format": "COMPLETE"})
        for exp_result in validation.results:
            res = self._by_id[exp_result.expectation_config.id]
            if exp_result.success:
                continue
            res.success = False
            info = exp_result.result or {}
            if exp_result.exception_info and exp_result.exception_info.get("raised_exception"):
                res.observed = exp_result.exception_info.get("exception_message")
            res.unexpected_count += int(info.get("unexpected_count") or 0)
            if info.get("observed_value") is not None:
                res.observed = _plain(info["observed_value"])
            if info.get("partial_missing_list"):
                res.observed = f"missing {_plain(info['partial_missing_list'])}"
                res.unexpected_count += int(info.get("missing_count") or 0)
            index = info.get("unexpected_index_list") or []
            if "id" in frame.columns:
                for i in index[: SAMPLE_IDS - len(res.sample_ids)]:
                    res.sample_ids.append(str(frame["id"].iloc[i] if isinstance(i, int) else i))

    def result(self) -> dict[str, Any]:
        """{"suite", "success", "rows", "expectations": [...]}: per expectation, the failing count
        summed over the chunks and a few failing ids."""
        return {"suite": self.name, "success": all(r.success for r in self._results), "rows": self.rows,
                "expectations": [r.as_dict() for r in self._results]}


class GateProcess:
    """A `SuiteRun` in another process: same calls, but GX is imported there, not in the stage.

    The process is a child the Great Expectations server forks for this gate run
    (cqia/gates/gx_server.py), or with `CQIA_GX_SERVER=0` a helper process started for it.
    Both serve `_serve_fd`'s protocol. `validate_*` send a chunk and return at once;
    `result()` waits for the process and returns what `SuiteRun.result()` would. An
    error there (a suite GX cannot build) is raised in the stage, as the error it was.
    The process exits when the stage does, also when the stage is killed (its end of
    the connection closes).
    """

    def __init__(self, suite: dict[str, Any], extra: list[dict[str, Any]] | None = None):
        from cqia.gates import gx_server

        self._process = None
        self._log = None
        if gx_server.enabled():
            self._conn, self._log = gx_server.connect()
        else:
            self._conn, self._process = _start_helper()
        self._conn.send((suite, extra))
        self.rows = 0

    def validate_table(self, table) -> None:
        """Validate a pyarrow Table (sent as Arrow IPC; the gate process makes the pandas frame)."""
        import pyarrow as pa

        self.rows += table.num_rows
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        self._send(("arrow", sink.getvalue().to_pybytes()))

    def validate_rows(self, columns: tuple[str, ...], rows: list[tuple]) -> None:
        """Validate a chunk given as rows; the gate process builds the frame (the stage need not import pandas)."""
        self.rows += len(rows)
        self._send(("rows", (columns, rows)))

    def result(self) -> dict[str, Any]:
        self._send(("result", None))
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            raise CqiaError("the Great Expectations gate process ended without a result",
                            fix="Run the stage again; if it repeats, run it with the suite in one process "
                                f"to see GX's error{self._see_log()}") from None
        finally:
            self._conn.close()
            if self._process is not None:
                self._process.wait(timeout=30)
        if kind == "error":
            raise value
        return value

    def _send(self, message) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            # The gate process stopped early: it left its error in the pipe, or died (then result() says so).
            try:
                kind, value = self._conn.recv() if self._conn.poll() else (None, None)
            except (EOFError, OSError):
                kind = None
            if kind == "error":
                raise value from None
            raise CqiaError("the Great Expectations gate process died",
                            fix=f"Run the stage again; if it repeats, check memory (`dmesg`){self._see_log()}") from None

    def _see_log(self) -> str:
        return f" and the Great Expectations server's log {self._log}" if self._log else ""


def _start_helper():
    """A helper process for one gate run (`CQIA_GX_SERVER=0`): the connection to it, and the process."""
    import socket
    import subprocess
    import sys
    from multiprocessing.connection import Connection

    # A plain interpreter that imports only this module (multiprocessing's spawn would import the
    # stage's own module again); the two ends of a socket pair carry pickled messages.
    mine, theirs = socket.socketpair()
    fd = theirs.fileno()
    process = subprocess.Popen(
        [sys.executable, "-c", f"from cqia.gates.gx import _serve_fd; _serve_fd({fd})"], pass_fds=(fd,))
    theirs.close()
    return Connection(mine.detach()), process


def _serve_fd(fd: int) -> None:
    """The gate process of a GateProcess (a server's child or a helper): validate the chunks it
    receives, send back the result."""
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    try:
        suite, extra = conn.recv()
        run = SuiteRun(suite, extra)
        while True:
            try:
                kind, frame = conn.recv()
            except EOFError:
                return  # the stage is gone
            if kind == "result":
                conn.send(("result", run.result()))
                return
            run.validate(_frame(kind, frame))
    except Exception as exc:  # noqa: BLE001 - anything GX raises is reported in the stage, one line
        if not isinstance(exc, CqiaError):
            exc = CqiaError(f"the Great Expectations gate failed to run ({type(exc).__name__}: {exc})")
        try:
            conn.send(("error", exc))
        except OSError:
            pass  # the stage is gone
    finally:
        conn.close()


def _frame(kind: str, data):
    """The pandas frame of a chunk GateProcess sent: ("rows", (columns, rows)) or ("arrow", IPC bytes)."""
    if kind == "rows":
        import pandas as pd

        columns, rows = data
        return pd.DataFrame.from_records(rows, columns=list(columns))
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all().to_pandas()


def _plain(value: Any) -> Any:
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        return str(value)


def failure_report(result: dict[str, Any], where: str) -> str:
    lines = [f"{where}: Great Expectations suite '{result['suite']}' failed on {result['rows']} rows:"]
    for exp in result["expectations"]:
        if exp["success"]:
            continue
        line = f"  - {exp['expectation']}"
        if exp["column"]:
            line += f" on column '{exp['column']}'"
        line += f": {exp['unexpected_count']} failing"
        if exp.get("sample_ids"):
            line += f", e.g. ids {', '.join(exp['sample_ids'])}"
        if exp.get("observed") is not None:
            line += f" (observed {exp['observed']})"
        lines.append(line)
    lines.append("  Nothing was written. Fix the data or the rule that let it through, or the suite if it is wrong.")
    return "\n".join(lines)
