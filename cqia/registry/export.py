"""Release records -> the JSON formats SFT trainers read, and LLaMA-Factory's dataset_info.json.

Pure converters: a record in, a training example out; no paths, no I/O.

- alpaca: ``{"instruction", "input", "output"}`` per example;
- sharegpt: ``{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}``,
  where the human turn is the instruction, then a newline and the input when there is one (the
  prompt LLaMA-Factory builds from an alpaca example);
- firefly: Firefly's training format, JSON Lines of ``{"conversation_id", "category",
  "conversation": [{"human": ..., "assistant": ...}]}``, with the same human turn.

alpaca and sharegpt are written as one JSON array and described in LLaMA-Factory's
dataset_info.json; firefly is written as JSON Lines (Firefly reads a file line by line) and has
no dataset_info.json entry (LLaMA-Factory does not read it).

COIG-CQIA records carry no system prompt, so no format has a ``system`` column. Every example
keeps the record's registry id (firefly's ``conversation_id``); trainers ignore columns their
mapping does not name, and the id leads back to the record's lineage.

A dataset's name (and file name) says which release it holds: the revision it was read at
(``coig_cqia_v0.1_alpaca``), or ``workspace`` for the release in the working tree, so exports
of two revisions sit side by side.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable

from cqia.common.errors import CqiaError

FORMATS = ("alpaca", "sharegpt", "firefly")
JSON_LINES = ("firefly",)          # written as JSON Lines (.jsonl); the others as one JSON array (.json)
DATASET_INFO = "dataset_info.json"
NAME_PREFIX = "coig_cqia"
OVERWRITE_FIX = "Pass --force to overwrite it, or write elsewhere with --out"

# LLaMA-Factory's dataset_info.json entry for each format, less `file_name` (its data/README.md).
_INFO = {
    "alpaca": {"formatting": "alpaca",
               "columns": {"prompt": "instruction", "query": "input", "response": "output"}},
    "sharegpt": {"formatting": "sharegpt",
                 "columns": {"messages": "conversations"},
                 "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}},
}


def _text(record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str):
        where = f"record {record.get('id', '<no id>')}"
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise CqiaError(f"field '{field}' is {got}, not a string", where=where,
                        fix="Export a release built by cqia-registry (its records pass the schema)")
    return value


def prompt(record: dict[str, Any]) -> str:
    """The user turn: the instruction, and the input on a new line when there is one."""
    instruction, extra = _text(record, "instruction"), _text(record, "input")
    return f"{instruction}\n{extra}" if extra else instruction


def to_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    return {"instruction": _text(record, "instruction"), "input": _text(record, "input"),
            "output": _text(record, "output"), "id": _text(record, "id")}


def to_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    return {"conversations": [{"from": "human", "value": prompt(record)},
                              {"from": "gpt", "value": _text(record, "output")}],
            "id": _text(record, "id")}


def to_firefly(record: dict[str, Any]) -> dict[str, Any]:
    """Firefly's example: the id as `conversation_id`, the source category (the id's prefix, see
    docs/pipeline.md "Ids") as `category`, and one turn."""
    rid = _text(record, "id")
    return {"conversation_id": rid, "category": rid.rpartition("-")[0],
            "conversation": [{"human": prompt(record), "assistant": _text(record, "output")}]}


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "alpaca": to_alpaca, "sharegpt": to_sharegpt, "firefly": to_firefly}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise CqiaError(f"unknown export format {fmt!r}", fix=f"Available formats: {list(FORMATS)}")
    return fmt


WORKSPACE = "workspace"


def rev_label(rev: str | None) -> str:
    """The revision as a part of a file name: `v0.1`, `feature_x` for `feature/x`, `workspace` for none."""
    if rev is None:
        return WORKSPACE
    return re.sub(r"[^0-9A-Za-z._-]+", "_", rev)


def dataset_name(fmt: str, category: str | None = None, rev: str | None = None) -> str:
    """The dataset's name in dataset_info.json and its file's stem, e.g. `coig_cqia_workspace_alpaca`,
    `coig_cqia_v0.1_zhihu_sharegpt`."""
    return "_".join(part for part in (NAME_PREFIX, rev_label(rev), category, check_format(fmt)) if part)


def file_name(fmt: str, name: str) -> str:
    """The exported file of dataset `name`: `<name>.json`, or `<name>.jsonl` for a JSON Lines format."""
    return f"{name}.jsonl" if check_format(fmt) in JSON_LINES else f"{name}.json"


def dataset_info_entry(fmt: str, file_name: str) -> dict[str, Any] | None:
    """LLaMA-Factory's description of one exported file; None for a format LLaMA-Factory does not read."""
    info = _INFO.get(check_format(fmt))
    return None if info is None else {"file_name": file_name, **copy.deepcopy(info)}


def add_dataset_info(existing: Any, name: str, entry: dict[str, Any], where: str = DATASET_INFO,
                     force: bool = False) -> dict[str, Any]:
    """`existing` dataset_info.json content with `name` set to `entry`; other datasets are kept.
    A different description already under `name` is replaced only with `force`."""
    if existing is None:
        existing = {}
    if not isinstance(existing, dict):
        raise CqiaError(f"is a JSON {type(existing).__name__}, not an object of dataset descriptions",
                        where=where, fix="Fix or remove it; cqia export adds its entry to an existing file")
    if not force and name in existing and existing[name] != entry:
        raise CqiaError(f"dataset \"{name}\" is already described, differently", where=where,
                        fix=OVERWRITE_FIX)
    merged = dict(existing)
    merged[name] = entry
    return merged
