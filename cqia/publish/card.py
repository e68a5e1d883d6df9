"""The merge core: accepted records of every category -> one release.

Pure helpers used by stages/merge.py: the Parquet schema, the manifest and the dataset card.
None of them sees a path.

The dataset card is the release's README.md, in the form the Hugging Face Hub and `datasets`
read: a YAML header with the documented metadata keys (`license`, `source_datasets`, `configs`,
`dataset_info` with `features` and `splits`, ...) and Markdown sections. Everything in it is
derived, never listed by hand: the features and the Data Fields table from the record's JSON
Schema, the licences, sources and PII rules from each category's params, the counts from the
publish summaries. What changed since the previous release is not in the card: merge runs inside
`dvc repro` and reads only its declared inputs, so the card of a tag rebuilds byte for byte from
that tag's commit, whatever tags exist; the changelog is the annotated tag's message, which
`cqia release` writes from the previous tag's committed metrics (`git show <tag>`).
"""

from __future__ import annotations

import copy
import io
from typing import Any, Iterable, NamedTuple

from cqia.common.errors import CqiaError
from cqia.common.fileio import dumps_canonical

ALL = "all"                                  # the config of every record
SPLIT = "train"


def parquet_schema(schema: dict[str, Any], where: str = "schemas/record.schema.json"):
    """The Arrow schema of `train.parquet`: one column per property of the record schema, in its order
    (the same types `features` gives the dataset card, so `datasets` reads the file as the card says)."""
    import pyarrow as pa

    return pa.schema([(name, arrow_type(prop, f"{where}: /properties/{name}"))
                      for name, prop in (schema.get("properties") or {}).items()])


def arrow_type(prop: dict[str, Any], where: str):
    """A JSON Schema property as an Arrow type: string, bool, int64, float64, list or struct."""
    import pyarrow as pa

    kind = _json_type(prop, where)
    if kind == "array":
        return pa.list_(arrow_type(prop.get("items") or {}, f"{where}/items"))
    if kind == "object":
        return pa.struct([(name, arrow_type(sub, f"{where}/properties/{name}"))
                          for name, sub in (prop.get("properties") or {}).items()])
    scalar = {"string": pa.string(), "boolean": pa.bool_(), "integer": pa.int64(), "number": pa.float64()}
    if kind not in scalar:
        raise CqiaError(f"type {kind!r} has no Arrow type", where=where,
                        fix="Use string, boolean, integer, number, array or object")
    return scalar[kind]


# --------------------------------------------------------------------------- features, from the JSON Schema

_DTYPES = {"string": "string", "boolean": "bool", "integer": "int64", "number": "float64"}


def _json_type(prop: dict[str, Any], where: str) -> str:
    kind = prop.get("type")
    if kind is None and prop.get("enum") and all(isinstance(v, str) for v in prop["enum"]):
        return "string"
    if not isinstance(kind, str):
        raise CqiaError(f"type {kind!r} has no Hugging Face feature type", where=where,
                        fix="Give the property one JSON type (string, boolean, integer, number, array, object)")
    return kind


def feature_type(prop: dict[str, Any], where: str) -> dict[str, Any]:
    """A JSON Schema property as the type part of a `datasets` feature in YAML: `dtype: string`,
    `sequence: string` (a list; the form `datasets` reads in every version), `struct: [...]`."""
    kind = _json_type(prop, where)
    if kind in _DTYPES:
        return {"dtype": _DTYPES[kind]}
    if kind == "array":
        inner = feature_type(prop.get("items") or {}, f"{where}/items")
        return {"sequence": inner["dtype"] if list(inner) == ["dtype"] else inner}
    if kind == "object":
        return {"struct": features(prop, where)}
    raise CqiaError(f"type {kind!r} has no Hugging Face feature type", where=where,
                    fix="Use string, boolean, integer, number, array or object")


def features(schema: dict[str, Any], where: str = "schemas/record.schema.json") -> list[dict[str, Any]]:
    """`dataset_info.features` of the records: one entry per property of the schema, in its order."""
    return [{"name": name, **feature_type(prop, f"{where}: /properties/{name}")}
            for name, prop in (schema.get("properties") or {}).items()]


def type_text(prop: dict[str, Any]) -> str:
    """A property's type as the Data Fields table writes it: `string`, `[string]`, `{major: [string]}`."""
    kind = _json_type(prop, "")
    if kind == "array":
        return f"[{type_text(prop.get('items') or {})}]"
    if kind == "object":
        return "{" + ", ".join(f"{k}: {type_text(v)}" for k, v in (prop.get("properties") or {}).items()) + "}"
    return kind


def field_rows(schema: dict[str, Any]) -> list[str]:
    rows = []
    for name, prop in (schema.get("properties") or {}).items():
        text = prop.get("description", "")
        if prop.get("enum"):
            text = f"{text} One of " + ", ".join(f"`{v}`" for v in prop["enum"]) + "."
        rows.append(f"| `{name}` | `{type_text(prop)}` | {text.strip()} |")
    return rows


# --------------------------------------------------------------------------- the card


class PiiLegend(NamedTuple):
    """What cqia/ingest/pii.py and cqia/ingest/rules.py look for, as the card describes it (passed in by merge)."""

    fields: tuple[str, ...]          # the record's fields that are searched
    labels: dict[str, str]           # kind -> what it is ("a phone number")
    masks: dict[str, str]            # kind -> its mask token ("[PHONE]")


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "n>10M"


def card_header(release: dict[str, Any], categories: list[dict[str, Any]], schema: dict[str, Any]) -> dict[str, Any]:
    """The YAML header, as data. Keys and their meaning are the Hub's (its datasetcard.md):
    `license` one id or a list, `source_datasets`, `configs` (`data_files` per split), and
    `dataset_info` per config with `features`, `splits` (`num_bytes`: the split's size as Arrow
    data, as `datasets` counts it, to within a few bytes: Arrow packs booleans and validity bits into
    whole bytes per batch, and the publish stages and `datasets` cut batches apart; `num_examples`),
    `download_size` (the Parquet files) and `dataset_size`."""
    total = sum(c["released"] for c in categories)
    licences = list(dict.fromkeys(c["license"] for c in categories))
    sources = list(dict.fromkeys(c.get("source_dataset") or c.get("source") or "original" for c in categories))
    released = [c for c in categories if c["released"]]
    header: dict[str, Any] = {
        "pretty_name": release.get("name", "COIG-CQIA"),
        "license": licences[0] if len(licences) == 1 else licences,
        "language": ["zh"],
        "task_categories": ["text-generation", "question-answering"],
        "size_categories": [size_category(total)],
        "source_datasets": sources,
    }
    if not released:
        return header
    configs = [(ALL, released)] + [(c["name"], [c]) for c in released]
    header["configs"] = [{"config_name": name, **({"default": True} if name == ALL else {}),
                          "data_files": [{"split": SPLIT, "path": [f"{c['name']}/train.parquet" for c in cats]
                                          if name == ALL else f"{cats[0]['name']}/train.parquet"}]}
                         for name, cats in configs]
    feats = features(schema)
    header["dataset_info"] = [{
        "config_name": name,
        "features": copy.deepcopy(feats),   # copies: one object written twice would become a YAML alias
        "splits": [{"name": SPLIT, "num_bytes": sum(c["num_bytes"] for c in cats),
                    "num_examples": sum(c["released"] for c in cats)}],
        "download_size": sum(c["parquet_bytes"] for c in cats),
        "dataset_size": sum(c["num_bytes"] for c in cats),
    } for name, cats in configs]
    return header


def yaml_text(data: dict[str, Any]) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.indent(mapping=2, sequence=2, offset=0)
    yaml.width = 4096
    yaml.allow_unicode = True
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _table(head: Iterable[str], rows: Iterable[Iterable[Any]], align: str = "") -> list[str]:
    """A Markdown table; `align` has an `r` for each right-aligned column (numbers), else `l`."""
    head = list(head)
    rule = ["---:" if a == "r" else "---" for a in align.ljust(len(head), "l")]
    return [f"| {' | '.join(head)} |", f"|{'|'.join(rule)}|"] + [f"| {' | '.join(map(str, r))} |" for r in rows]


def _reasons(by_reason: dict[str, int]) -> str:
    return ", ".join(f"`{r}` {n}" for r, n in sorted(by_reason.items())) or "-"


def licence_section(categories: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in categories:
        terms = c.get("license_terms") or ("not stated in the registry's params.yaml" if c["license"] == "unknown"
                                           else f"the `{c['license']}` licence")
        rows.append((c["name"], f"`{c['license']}`", terms, c.get("copyright") or "-"))
    return ["## Licensing Information", "",
            "Each source category keeps its upstream licence, so the release has several: use each "
            "category's records under its own (the `license` of the header lists them; the `copyright` "
            "field of every record says the same for that record).", "",
            *_table(["category", "license", "terms", "`copyright` of its records (default)"], rows), ""]


def pii_section(categories: list[dict[str, Any]], legend: PiiLegend) -> list[str]:
    kinds = list(legend.labels)
    rows = []
    for c in categories:
        rules = c.get("pii") or {}
        masked = [f"{legend.labels[k]} → `{legend.masks[k]}`" for k in kinds if rules.get(k) == "mask"]
        rejected = [legend.labels[k] for k in kinds if rules.get(k) == "reject"]
        kept = [legend.labels[k] for k in kinds if rules.get(k, "keep") == "keep"]
        rows.append((c["name"], "; ".join(masked) or "-", ", ".join(rejected) or "-", ", ".join(kept) or "-",
                     c["rejected_by_reason"].get("pii", 0)))
    fields = ", ".join(f"`{f}`" for f in legend.fields)
    return ["## Personal and Sensitive Information", "",
            f"Every record's {fields} are searched, after normalisation and in any character width "
            "(full-width digits, zero-width characters between them), for: "
            + ", ".join(legend.labels[k] for k in kinds) + ". "
            "Each category's `rules.pii` in the registry's params says, per kind, what happens to a find: "
            "**mask** replaces it in the record with a token; **reject** drops the record with reason code `pii`; "
            "**keep** does not look for it. The lineage's copy of the raw record is masked the same way.", "",
            *_table(["category", "masked", "rejected (reason `pii`)", "not looked for", "records rejected"], rows,
                    "llllr"), "",
            "Only these patterns are looked for: names, addresses and other personal information are not, "
            "and a number written in a way the patterns do not read is not found.", ""]


def filtering_section(categories: list[dict[str, Any]], neardup: dict[str, Any] | None) -> list[str]:
    rows = [(c["name"], c["raw"], c["released"], c["rejected"], _reasons(c["rejected_by_reason"]))
            for c in categories]
    totals: dict[str, int] = {}
    for c in categories:
        for r, n in c["rejected_by_reason"].items():
            totals[r] = totals.get(r, 0) + n
    rows.append(("**total**", sum(c["raw"] for c in categories), sum(c["released"] for c in categories),
                 sum(c["rejected"] for c in categories), _reasons(totals)))
    lines = ["## Filtering", "",
             "Every raw record is released or rejected with a reason code (`lineage/<category>/lineage.jsonl` "
             "has each one's reason and every step that judged it). Rejected, by reason code:", "",
             *_table(["category", "raw", "released", "rejected", "rejected by reason code"], rows, "lrrrl"), "",
             f"Exact duplicates (same instruction, input and output; the first in release order is kept): "
             f"{totals.get('duplicate_of', 0)} rejected as `duplicate_of`."]
    if neardup and neardup.get("enabled"):
        lines.append(f"Near duplicates (MinHash LSH over character {neardup['ngram']}-grams of instruction, input "
                     f"and output; estimated Jaccard similarity at least {neardup['threshold']} for the whole "
                     f"record and for the output): {neardup['near_duplicates']} rejected as `near_duplicate_of`, "
                     f"in {neardup['clusters']} clusters.")
    elif neardup is not None:
        lines.append("Near-duplicate detection was off for this release.")
    return lines + [""]


def dataset_card(release: dict[str, Any], categories: list[dict[str, Any]], example: dict[str, Any] | None,
                 schema: dict[str, Any], pii_legend: PiiLegend, neardup: dict[str, Any] | None = None) -> str:
    """The Hugging Face dataset card (README.md) with one config per category plus `all`.

    `categories` are merge's summaries in release order (name, raw, released, rejected,
    rejected_by_reason, source, source_dataset, construction, license, license_terms, copyright,
    pii, num_bytes, parquet_bytes). The configs read the Parquet files, whose column types are
    the registry's (JSON would be type-inferred: a column of empty lists would load as `null`);
    `all` lists every category's file in release order, so it yields every record in release
    order. A category with no released record gets no config: `datasets` cannot load an empty
    data file.
    """
    if any(c["name"] == ALL for c in categories):
        raise CqiaError("category name 'all' clashes with the dataset card's config of every record",
                        where="params.yaml: categories.all", fix="Rename the category")
    total = sum(c["released"] for c in categories)
    name = release.get("name", "COIG-CQIA")
    lines = ["---", yaml_text(card_header(release, categories, schema)).rstrip("\n"), "---", "",
             f"# {name} {release['version']}", "", release.get("description", "").strip(), "",
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
    lines += ["## Data Fields", "", *_table(["field", "type", "description"], []), *field_rows(schema), "",
              "## Dataset Breakdown", "",
              *_table(["category", "quantity", "source", "construction method"],
                      [*((c["name"], c["released"], c.get("source", ""), c.get("construction", "")) for c in categories),
                       ("**total**", f"**{total}**", "", "")], "lr"), ""]
    lines += filtering_section(categories, neardup)
    lines += pii_section(categories, pii_legend)
    lines += licence_section(categories)
    lines += ["## Changelog", "",
              f"The annotated git tag `{release['version']}` of the registry holds what changed since the previous "
              "release: records per category and the difference (`git show " + release["version"] + "`). "
              "It is not in this card, so that the card rebuilds byte for byte from the tag's commit.", "",
              "## Citation", "", "```bibtex", release.get("citation", "").strip(), "```", ""]
    return "\n".join(lines)
