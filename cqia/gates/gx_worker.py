"""The gate process's side of the Great Expectations gate: GX imported, a suite run chunk by chunk.

`serve(fd)` is what runs in the process a `GateProcess` (cqia/gates/gx.py) talks to: a child
the Great Expectations server forked (cqia/gates/gx_server.py), or with `CQIA_GX_SERVER=0` a
helper of the stage's own. It receives the suite, then chunks of the batch, and sends back
`SuiteRun.result()` (or the error, as a CqiaError). This module imports neither the client nor
the server: client -> server -> worker, no cycle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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


def serve(fd: int) -> None:
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
