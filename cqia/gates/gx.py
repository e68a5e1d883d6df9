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

from pathlib import Path
from typing import Any

import orjson

from cqia.common.errors import CqiaError
from cqia.gates import gx_server


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


class GateProcess:
    """A `SuiteRun` (cqia/gates/gx_worker.py) in another process: same calls, but GX is imported there, not in the stage.

    The process is a child the Great Expectations server forks for this gate run
    (cqia/gates/gx_server.py), or with `CQIA_GX_SERVER=0` a helper process started for it.
    Both serve `cqia.gates.gx_worker.serve`'s protocol. `validate_*` send a chunk and return at once;
    `result()` waits for the process and returns what `SuiteRun.result()` would. An
    error there (a suite GX cannot build) is raised in the stage, as the error it was.
    The process exits when the stage does, also when the stage is killed (its end of
    the connection closes).
    """

    def __init__(self, suite: dict[str, Any], extra: list[dict[str, Any]] | None = None):
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
        [sys.executable, "-c", f"from cqia.gates.gx_worker import serve; serve({fd})"], pass_fds=(fd,))
    theirs.close()
    return Connection(mine.detach()), process


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
