"""The category stage's outcomes as it writes them, and what a worker needs to make them.

`written_form` is the `render` of cqia/ingest/parallel.py: it runs where the
outcomes are made (the main process, a forked worker, a Ray worker), so a
worker sends back bytes and short tuples, never record dicts.

`JudgeSpec` is what a worker needs to judge a category's records, in a form
that pickles: the checked category, the record schema's document, the review
decisions, the MinHash settings and the suite's name. A forked worker inherits
the built processor; a Ray worker on another machine builds its own from the
spec (`build`), once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from cqia.common.fileio import dumps_line
from cqia.common.lineage import gate_step
from cqia.common.params import Category
from cqia.dedup.keys import KeysBuilder
from cqia.dedup.neardup import NearDupConfig
from cqia.gates.schema import RecordSchema
from cqia.ingest.decisions import Decision
from cqia.ingest.judge import Outcome, Processor

# The frame the Great Expectations suite sees: the record's short fields, and the text fields
# as character counts (a chunk of full texts would cost ~1 GB per 50k records).
GX_COLUMNS = ("id", "instruction_chars", "input_chars", "output_chars", "answer_from", "human_verified",
              "copyright", "task_type_major", "domain", "domain_count")

Render = Callable[[list[Outcome]], list[Any]]


def gx_row(record: dict[str, Any]) -> tuple:
    return (record["id"], len(record["instruction"]), len(record["input"]), len(record["output"]),
            record["answer_from"], record["human_verified"], record["copyright"],
            "|".join(record["task_type"]["major"]), "|".join(record["domain"]), len(record["domain"]))


def written_form(outcomes: list[Outcome], suite: str, keys: KeysBuilder) -> list[tuple]:
    """The outcomes as the stage writes them.

    One plain tuple per outcome, cheap to send from a worker process:
    (accepted, reason code, if accepted its lines of the accepted records and of
    their lineage (a pair) else its line of rejects.jsonl, and if accepted its
    Great Expectations row and its row of the keys file).
    """
    key_rows = iter(keys.rows([outcome.record for outcome in outcomes if outcome.accepted]))
    out = []
    for outcome in outcomes:
        if outcome.accepted:
            outcome.lineage["steps"].append(gate_step(suite))
            out.append((True, None, (dumps_line(outcome.record), dumps_line(outcome.lineage)),
                        gx_row(outcome.record), next(key_rows)))
        else:
            out.append((False, outcome.reason or "unknown", dumps_line(outcome.lineage), None, None))
    return out


@dataclass(frozen=True)
class JudgeSpec:
    """Everything that decides a category's outcomes and their written form; it pickles."""

    category: Category
    schema: dict[str, Any]              # the record schema's document
    decisions: dict[str, Decision]
    near: NearDupConfig | None
    suite: str                          # the Great Expectations suite's name, in each accepted lineage

    def keys(self) -> KeysBuilder:
        return KeysBuilder(self.category.name, self.near)

    def build(self) -> tuple[Processor, Render]:
        """A fresh processor (with every decision unused) and the render that goes with it."""
        processor = Processor(self.category, RecordSchema(self.schema), self.decisions)
        return processor, partial(written_form, suite=self.suite, keys=self.keys())
