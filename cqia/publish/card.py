"""The merge core: accepted records of every category -> one release.

Pure helpers used by stages/merge.py: exact duplicate keys, the Parquet
schema, the manifest and the dataset card. None of them sees a path.
"""

from __future__ import annotations

from typing import Any

from cqia.common.errors import CqiaError
from cqia.common.fileio import dumps_canonical

FIELDS_DOC = (
    ("instruction", "string", "The instruction or question."),
    ("input", "string", "Optional context for the instruction; often empty."),
    ("output", "string", "The response."),
    ("task_type", "{major: [string], minor: [string]}", "Task labels, major and minor."),
    ("domain", "[string]", "Domain labels."),
    ("metadata", "string", "Source-specific metadata, as published."),
    ("answer_from", "string", "Who wrote the answer: `human`, `llm` or `expert`."),
    ("human_verified", "boolean", "Whether a person checked the record."),
    ("copyright", "string", "Copyright and licence note for the record."),
    ("id", "string", "Stable registry id: `<category>-<16 hex digits>` derived from the raw record."),
)


def parquet_schema():
    import pyarrow as pa

    strings = pa.list_(pa.string())
    return pa.schema([
        ("id", pa.string()), ("instruction", pa.string()), ("input", pa.string()), ("output", pa.string()),
        ("task_type", pa.struct([("major", strings), ("minor", strings)])), ("domain", strings),
        ("metadata", pa.string()), ("answer_from", pa.string()), ("human_verified", pa.bool_()),
        ("copyright", pa.string()),
    ])


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "n>10M"


def _yaml_str(value: str) -> str:
    return dumps_canonical(value).decode()  # a JSON string is a valid YAML scalar


def dataset_card(release: dict[str, Any], categories: list[dict[str, Any]], example: dict[str, Any] | None) -> str:
    """The Hugging Face dataset card (README.md) with one config per category plus `all`.

    The configs read the Parquet files, whose column types are the registry's (JSON would be
    type-inferred: a column of empty lists would load as `null`); `all` lists every category's
    file in release order, so it yields every record in release order. A category
    with no released record gets no config: `datasets` cannot load an empty data file.
    """
    total = sum(c["released"] for c in categories)
    if any(c["name"] == "all" for c in categories):
        raise CqiaError("category name 'all' clashes with the dataset card's config of every record",
                        where="params.yaml: categories.all", fix="Rename the category")
    parquet = [f"{c['name']}/train.parquet" for c in categories if c["released"]]
    lines = ["---", f"pretty_name: {_yaml_str(release.get('name', 'COIG-CQIA'))}",
             f"license: {release.get('license', 'other')}", "language:", "- zh",
             "task_categories:", "- text-generation", "- question-answering",
             "size_categories:", f"- {size_category(total)}"]
    if parquet:
        lines += ["configs:", "- config_name: all", "  default: true", "  data_files:", "  - split: train",
                  "    path:"] + [f"    - {path}" for path in parquet]
    for cat, path in zip([c for c in categories if c["released"]], parquet):
        lines += [f"- config_name: {cat['name']}", "  data_files:", "  - split: train", f"    path: {path}"]
    lines += ["---", "", f"# {release.get('name', 'COIG-CQIA')} {release['version']}", "",
              release.get("description", "").strip(), "",
              "Built by cqia-registry from raw upstream files; every record carries a stable `id`, "
              "and `lineage/<category>/lineage.jsonl` traces it back to its raw file and line "
              "(`cqia lineage ID` looks it up). `manifest.json` holds the sha256 of every file.", "",
              "## Data Format", "",
              "JSON Lines, one record per line, UTF-8, in the Hugging Face layout "
              "(`<category>/train.jsonl`, also as `<category>/train.parquet`). "
              "`datasets.load_dataset(<this directory>, <config>)` reads the Parquet files; "
              "the configs are `all` (the default: every record, in release order) and one per category.", ""]
    if example is not None:
        lines += ["```json", dumps_canonical(example).decode(), "```", ""]
    lines += ["## Data Fields", "", "| field | type | description |", "|---|---|---|"]
    lines += [f"| `{name}` | `{kind}` | {text} |" for name, kind, text in FIELDS_DOC]
    lines += ["", "## Dataset Breakdown", "", "| category | quantity | source | construction method |",
              "|---|---:|---|---|"]
    for cat in categories:
        lines.append(f"| {cat['name']} | {cat['released']} | {cat.get('source', '')} | {cat.get('construction', '')} |")
    lines += [f"| **total** | **{total}** | | |", "", "## Citation", "", "```bibtex",
              release.get("citation", "").strip(), "```", ""]
    return "\n".join(lines)
