"""params.yaml: the source categories, their defaults and rule thresholds.

A category's `rules` are merged over params' `rule_defaults` (`merge_rules`): a
mapping merges key by key, at any depth (`min_chars: {output: 10}` keeps the
default `min_chars.instruction`; `task_types` merge by name), anything else
replaces the default, and `null` switches a default knob off.

This module reads params and checks each category's shape (names, raw files, defaults), cheaply:
the aggregating stages (dedup, publish, merge, report) need only the names and their order, so
they do not import the rules. `cqia.ingest.config` adds the checks of what only the category stage
uses (the format, the rules' knobs, the normalisation options). YAML is loaded with ruamel's safe
loader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from cqia.common.errors import CqiaError
from cqia.common.record import DEFAULTABLE_KEYS

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
RECORD_DEFAULT_KEYS = DEFAULTABLE_KEYS
CATEGORY_KEYS = {
    "format", "raw", "suite", "source", "source_dataset", "construction", "license", "license_terms", "defaults",
    "rules", "review", "normalize",
}
# A Hugging Face licence identifier (apache-2.0, cc-by-nc-4.0, openrail++, other, unknown, ...).
LICENSE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
OTHER_LICENSE, UNKNOWN_LICENSE = "other", "unknown"


def load_yaml(path: str | Path) -> Any:
    yaml = YAML(typ="safe", pure=True)
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle)
    except FileNotFoundError:
        raise CqiaError("file not found", where=str(path), fix="Run from the repository root") from None
    except Exception as exc:  # ruamel raises many types; all mean "not valid YAML"
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CqiaError(f"not valid YAML ({getattr(exc, 'problem', exc)})", where=where,
                        fix="Fix the YAML syntax") from None


@dataclass(frozen=True)
class Category:
    """One source category, as checked from its params entry."""

    name: str
    format: str
    raw: tuple[str, ...]
    suite: str
    source: str
    construction: str
    defaults: dict[str, Any]
    license: str = UNKNOWN_LICENSE   # a Hugging Face licence id; `other` comes with license_terms
    license_terms: str = ""
    source_dataset: str = ""         # the upstream dataset (its Hugging Face id or name), or `original`
    rules: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)
    normalize: dict[str, Any] = field(default_factory=dict)


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise CqiaError(
            f"category name {name!r} is not allowed",
            where=where,
            fix="Use lower-case letters, digits and '_' only (it becomes a directory name; no '/' or '..')",
        )
    return name


def check_relative_file(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise CqiaError(f"raw file {value!r} must be a non-empty string", where=where)
    path = Path(value)
    if (path.is_absolute() or ".." in path.parts or len(path.parts) != 1 or path.name != value
            or any(ord(ch) < 0x20 or ch == "\x7f" for ch in value)):
        raise CqiaError(
            f"raw file {value!r} must be a plain file name inside the category's raw directory",
            where=where,
            fix="Put the file in data/raw/<category>/ and list only its name",
        )
    return value


def merge_rules(defaults: dict[str, Any] | None, rules: dict[str, Any]) -> dict[str, Any]:
    """`rules` deep-merged over `defaults`: mappings merge key by key, other values replace."""
    merged = dict(defaults or {})
    for key, value in rules.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_rules(merged[key], value)
        else:
            merged[key] = value
    return merged


def rule_defaults(params: Any, where: str = "params.yaml") -> dict[str, Any]:
    """Params' `rule_defaults` (the thresholds every category's `rules` start from), {} if absent."""
    value = params.get("rule_defaults") if isinstance(params, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CqiaError("must be a mapping of rule knobs", where=f"{where}: rule_defaults",
                        fix="e.g. rule_defaults: {mojibake: true, max_char_repeats: 10}")
    return value


def category_from_params(name: str, entry: Any, where: str = "params.yaml",
                         base_rules: dict[str, Any] | None = None) -> Category:
    """The category's entry, its shape checked and its rules merged over `base_rules` (params'
    `rule_defaults`); `cqia.ingest.config.checked_category` checks the rest."""
    key = f"{where}: categories.{name}"
    check_name(name, where)
    if not isinstance(entry, dict):
        raise CqiaError("must be a mapping", where=key)
    unknown = sorted(set(entry) - CATEGORY_KEYS)
    if unknown:
        raise CqiaError(f"unknown key(s) {unknown}", where=key, fix=f"Available keys: {sorted(CATEGORY_KEYS)}")
    fmt = entry.get("format")
    if not isinstance(fmt, str):
        raise CqiaError(f"format {fmt!r} must be the name of a format", where=f"{key}.format",
                        fix="Run `cqia check` to list the formats")
    raw = entry.get("raw")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise CqiaError("must list at least one raw file", where=f"{key}.raw")
    raw = tuple(check_relative_file(r, f"{key}.raw") for r in raw)
    suite = entry.get("suite", "default")
    check_name(suite, f"{key}.suite")
    defaults = entry.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise CqiaError("must be a mapping", where=f"{key}.defaults")
    unknown = sorted(set(defaults) - set(RECORD_DEFAULT_KEYS))
    if unknown:
        raise CqiaError(f"unknown key(s) {unknown}", where=f"{key}.defaults",
                        fix=f"Available keys: {list(RECORD_DEFAULT_KEYS)}")
    for section in ("rules", "review", "normalize"):
        if not isinstance(entry.get(section) or {}, dict):
            raise CqiaError("must be a mapping", where=f"{key}.{section}")
    lic, terms = check_license(entry, defaults, key)
    source_dataset = entry.get("source_dataset", "")
    if not isinstance(source_dataset, str):
        raise CqiaError(f"source_dataset {source_dataset!r} must be a string", where=f"{key}.source_dataset",
                        fix="Name the upstream dataset (its Hugging Face id, e.g. BAAI/COIG), or `original`")
    return Category(
        name=name,
        format=fmt,
        raw=raw,
        suite=suite,
        source=str(entry.get("source", "")),
        construction=str(entry.get("construction", "")),
        defaults=dict(defaults),
        license=lic,
        license_terms=terms,
        source_dataset=source_dataset,
        rules=merge_rules(base_rules, entry.get("rules") or {}),
        review=dict(entry.get("review") or {}),
        normalize=dict(entry.get("normalize") or {}),
    )


def check_license(entry: dict[str, Any], defaults: dict[str, Any], key: str) -> tuple[str, str]:
    """The category's licence and, for `other`, its terms. A licence other than `other` or `unknown`
    must be named in the records' default `copyright` note, if there is one, so that the dataset
    card and the records say the same."""
    lic = entry.get("license", UNKNOWN_LICENSE)
    if not isinstance(lic, str) or not LICENSE_RE.fullmatch(lic):
        raise CqiaError(f"licence {lic!r} is not a Hugging Face licence id", where=f"{key}.license",
                        fix="Use one such as apache-2.0 or cc-by-nc-4.0 (lower case), or `other` with "
                            "license_terms, or `unknown`")
    terms = entry.get("license_terms", "")
    if lic == OTHER_LICENSE and (not isinstance(terms, str) or not terms.strip()):
        raise CqiaError("license is `other` but license_terms is missing", where=f"{key}.license_terms",
                        fix="Say what the terms are, e.g. license_terms: research use only, with the authors' permission")
    if lic != OTHER_LICENSE and "license_terms" in entry:
        raise CqiaError(f"license_terms is only for license `other`, and the licence is {lic!r}",
                        where=f"{key}.license_terms", fix="Remove license_terms, or set license: other")
    note = defaults.get("copyright")
    if lic not in (OTHER_LICENSE, UNKNOWN_LICENSE) and isinstance(note, str) and lic not in note.lower():
        raise CqiaError(f"license is {lic!r} but the default copyright {note!r} does not name it",
                        where=f"{key}.license",
                        fix="Make them agree: correct the licence, or name it in defaults.copyright")
    return lic, terms.strip() if isinstance(terms, str) else ""


def load_categories(params: dict[str, Any], where: str = "params.yaml") -> list[Category]:
    """All categories, in params order (the order merge keeps duplicates by)."""
    entries = params.get("categories") if isinstance(params, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise CqiaError("no 'categories' mapping", where=where, fix="Add at least one source category")
    base_rules = rule_defaults(params, where)
    return [category_from_params(name, entry, where, base_rules) for name, entry in entries.items()]


def load_category(params: dict[str, Any], name: str, where: str = "params.yaml") -> Category:
    entries = params.get("categories") or {}
    if name not in entries:
        raise CqiaError(f"unknown category {name!r}", where=where, fix=f"Available categories: {list(entries)}")
    return category_from_params(name, entries[name], where, rule_defaults(params, where))
